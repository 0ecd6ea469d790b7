// A worker of distributed runs (`selfrag worker`): one loaded model answering the questions of a
// BullMQ queue, as many at once as its sequence slots allow, through one RequestScheduler, so the
// questions it holds share every decode step exactly as in a single-process `selfrag eval`.
//
// - Concurrency follows the jobs' settings: sequences / ndocs questions in short form,
//   sequences / (beamWidth x ndocs) in long form (BullMQ's concurrency is changed when a job of
//   other settings arrives; extra questions wait for slots in the scheduler).
// - A job whose model fingerprint is not this worker's model is put back in the queue untouched
//   (moveToWait + WaitingError, no attempt used) and the worker stops with MODEL_MISMATCH: a
//   worker with the right model takes it.
// - A failed answer is thrown back to BullMQ as `[CODE] message`: retried (another attempt, maybe
//   on another worker) unless the failure is the question's own (an invalid record), which no
//   retry can change (UnrecoverableError).
// - Killed mid-job, its jobs' locks expire and BullMQ's stalled-job check (run by every worker)
//   returns them to the queue; `lockDurationMs` / `stalledIntervalMs` set how soon.
import os from "node:os";
import {UnrecoverableError, WaitingError, Worker, type Job} from "bullmq";
import {SelfRagError} from "../errors.js";
import {answerOne, type EvalRecord} from "../eval/Evaluation.js";
import type {Retriever} from "../selfrag/LongForm.js";
import {RequestScheduler} from "../serving/RequestScheduler.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {encodeFailure, jobPlan, type AnswerJobData} from "./jobs.js";
import {slotsNeeded} from "../selfrag/plan.js";
import {checkRedis, redisConnection, type RedisConnection, type RedisEvent} from "./redis.js";
import {DEFAULT_QUEUE} from "./redisUrl.js";

/** Failures that belong to the question itself: the same on every worker and attempt. */
const QUESTION_ERRORS = new Set(["INVALID_ARGUMENT", "INVALID_REQUEST", "INVALID_TOKEN", "TOKENIZE_FAILED", "EMPTY_PASSAGES"]);

export interface EvalWorkerOptions {
    /** redis://HOST:PORT of the queue's Redis. */
    redis: string;
    /** BullMQ queue name (default "selfrag"), the coordinator's --queue. */
    queue?: string;
    model: SelfRagModel;
    /** This model's `modelFingerprint`: jobs of runs started with another model are refused. */
    fingerprint: string;
    /** Passages for questions whose job carries none (e.g. an index's asRetriever()). */
    retriever?: Retriever;
    /** How long a job's lock lasts without renewal (30,000 ms): a dead worker's jobs return after about this. */
    lockDurationMs?: number;
    /** How often stalled jobs (expired locks) are looked for (30,000 ms). */
    stalledIntervalMs?: number;
    /** Times a question may be lost with its worker before it fails (2). */
    maxStalledCount?: number;
    /** Time limit of the first connection to Redis, in ms (5000). */
    connectTimeoutMs?: number;
    /** Shown by BullMQ as the job's `processedBy` (default host:pid). */
    name?: string;
    onRedis?: (event: RedisEvent) => void;
    /** BullMQ errors other than a lost connection (a lock lost to the stalled-job check, say): the worker goes on. */
    onWarning?: (message: string) => void;
    /** After each job: the counts so far. */
    onProgress?: (stats: EvalWorkerStats) => void;
}

export interface EvalWorkerStats {
    answered: number;
    /** Attempts that failed (each retried unless it was the last). */
    failed: number;
    /** Jobs held now. */
    active: number;
    /** Jobs this worker takes at once (from the last job's settings). */
    concurrency: number;
    seconds: number;
    questionsPerSecond: number;
}

/**
 * ```ts
 * const model = await SelfRagModel.load({modelPath, sequences: 20});
 * const worker = await EvalWorker.start({redis: "redis://10.0.0.5:6379", model, fingerprint: await modelFingerprint(modelPath)});
 * process.once("SIGTERM", () => void worker.close());
 * await worker.finished; // closed (or refused a run: MODEL_MISMATCH)
 * ```
 */
export class EvalWorker {
    private readonly worker: Worker<AnswerJobData, EvalRecord>;
    private readonly scheduler: RequestScheduler;
    private readonly started = Date.now();
    private readonly counts = {answered: 0, failed: 0, active: 0};
    /** Why the worker stopped on its own (MODEL_MISMATCH), if it did. */
    private refusal: SelfRagError | undefined;
    private closing: Promise<void> | undefined;
    private resolveFinished!: () => void;
    /** Settles when the worker has stopped: rejects with MODEL_MISMATCH when it refused a run (or with what stopped it). */
    public readonly finished: Promise<void>;

    private constructor(private readonly options: EvalWorkerOptions, private readonly connection: RedisConnection) {
        const sequences = options.model.context.sequences;
        this.scheduler = new RequestScheduler(options.model, {maxQueue: 1 << 16});
        this.finished = new Promise<void>((resolve) => {
            this.resolveFinished = resolve;
        }).then(() => {
            if (this.refusal != null) throw this.refusal;
        });
        this.worker = new Worker<AnswerJobData, EvalRecord>(options.queue ?? DEFAULT_QUEUE, (job, token) => this.process(job, token), {
            connection: connection.client,
            name: options.name ?? `${os.hostname()}:${process.pid}`,
            // Until a job says otherwise: questions of the default five passages.
            concurrency: Math.max(1, Math.floor(sequences / 5)),
            lockDuration: options.lockDurationMs ?? 30_000,
            stalledInterval: options.stalledIntervalMs ?? 30_000,
            maxStalledCount: options.maxStalledCount ?? 2,
            autorun: false
        });
        this.worker.on("error", connection.onBullError((error) => options.onWarning?.(error.message)));
    }

    /** Checks Redis (REDIS_UNAVAILABLE when it cannot be reached) and starts taking jobs. */
    public static async start(options: EvalWorkerOptions): Promise<EvalWorker> {
        await checkRedis(options.redis, options.connectTimeoutMs);
        const worker = new EvalWorker(options, redisConnection(options.redis, options.onRedis));
        void worker.worker.run().catch((error: unknown) => {
            worker.refusal ??= error instanceof SelfRagError ? error
                : new SelfRagError(`the worker stopped: ${(error as Error).message}`, "INTERNAL", {cause: error});
            void worker.close();
        });
        await worker.worker.waitUntilReady();
        return worker;
    }

    public get stats(): EvalWorkerStats {
        const seconds = (Date.now() - this.started) / 1000;
        return {...this.counts, concurrency: this.worker.concurrency, seconds, questionsPerSecond: this.counts.answered / Math.max(seconds, 1e-3)};
    }

    /**
     * Stops taking jobs, finishes the ones held (`force`: abandons them to the stalled-job check),
     * and closes the queue connections; the model stays the caller's.
     */
    public close(force = false): Promise<void> {
        if (force) void this.worker.close(true);
        this.closing ??= (async () => {
            try {
                await this.worker.close(force);
                await this.scheduler.close();
            } finally {
                await this.connection.close();
                this.resolveFinished();
            }
        })();
        return this.closing;
    }

    private async process(job: Job<AnswerJobData, EvalRecord>, token: string | undefined): Promise<EvalRecord> {
        const {fingerprint, settings, item, run} = job.data;
        if (fingerprint !== this.options.fingerprint || this.refusal != null) {
            // Back to the queue as it was (no attempt counted), for a worker with the right model.
            await job.moveToWait(token);
            this.refusal ??= new SelfRagError(`refusing the questions of run ${run}: it was started with the model ${fingerprint}, ` +
                `this worker holds ${this.options.model.path} (${this.options.fingerprint}); start workers with the coordinator's --model`,
            "MODEL_MISMATCH");
            void this.close();
            throw new WaitingError();
        }
        this.counts.active++;
        try {
            // The job's settings are planned here as any other surface's (another process wrote them).
            const plan = jobPlan(settings, this.options.retriever);
            const wanted = Math.max(1, Math.floor(this.options.model.context.sequences / slotsNeeded(plan)));
            if (this.worker.concurrency !== wanted) this.worker.concurrency = wanted;
            const record = await answerOne(this.scheduler, item, plan, settings.referenceFields);
            this.counts.answered++;
            return record;
        } catch (error) {
            this.counts.failed++;
            const e = error as Error & {code?: string};
            const reason = encodeFailure(e.code ?? "INTERNAL", e.message);
            throw QUESTION_ERRORS.has(e.code ?? "") ? new UnrecoverableError(reason) : new Error(reason);
        } finally {
            this.counts.active--;
            this.options.onProgress?.(this.stats);
        }
    }
}
