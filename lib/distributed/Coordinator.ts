// The coordinator of a distributed evaluation (`selfrag eval --redis URL`): it reads the
// evaluation file, enqueues one BullMQ job per question (id = run id + question id, so a restarted
// coordinator re-adding its questions finds them already queued, answered or failed), and writes
// each record to the output as its job finishes, scored exactly as a single-process run scores
// it (the same scoreRecord / errorRecord / EvalTally). Workers (`selfrag worker`) answer the jobs.
//
// Finished jobs are found by polling the queue's completed and failed sets (ids only, a cheap
// ZRANGE) rather than by listening to events: polling needs no event to have been seen, so it
// works the same after a coordinator restart or a Redis outage. A written job is removed from
// Redis, so Redis holds only the questions in flight; at most `maxPending` (10,000) questions are
// enqueued ahead of the written ones, so a file of millions does not sit in Redis memory at once.
// Failures: BullMQ retries a failed attempt (3 attempts, exponential backoff), returns the jobs of
// a dead worker to the queue (stalled-job recovery), and a question failing every attempt arrives
// in the failed set and becomes an error record, as in a single-process run.
import {Queue, type Job} from "bullmq";
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import {toEvalItem, type EvalItem} from "../eval/EvalItems.js";
import {EvalTally, errorRecord, evaluationMetrics, evaluationPlan, noQuestionsError, scoreRecord, type EvalRecord, type EvalSummary, type EvaluationOptions} from "../eval/Evaluation.js";
import {readJsonRecords} from "../jsonRecords.js";
import {planOptions} from "../selfrag/plan.js";
import {modelFingerprint} from "./fingerprint.js";
import {ANSWER_JOB, decodeFailure, jobId, jobItem, runId, type AnswerJobData, type RunSettings} from "./jobs.js";
import {checkRedis, redisConnection, type RedisEvent} from "./redis.js";
import {DEFAULT_QUEUE} from "./redisUrl.js";

export interface DistributedEvaluationOptions extends Omit<EvaluationOptions, "retriever" | "batchSize"> {
    /** redis://HOST:PORT of the Redis holding the queue. */
    redis: string;
    /** BullMQ queue name (default "selfrag"): the workers' --queue. */
    queue?: string;
    /** The model the questions must be answered with: its fingerprint travels in every job, and workers holding another model refuse. */
    modelPath: string;
    /** Attempts per question before its error record is written (3). */
    attempts?: number;
    /** First retry delay in ms, doubled at each attempt (1000). */
    backoffMs?: number;
    /** How often the queue is asked for finished jobs, in ms (100). */
    pollMs?: number;
    /** Questions enqueued but not yet written, at most (10,000). */
    maxPending?: number;
    /** Time limit of the first connection to Redis, in ms (5000). */
    connectTimeoutMs?: number;
    /** Redis lost / back mid-run (the run waits for it). */
    onRedis?: (event: RedisEvent) => void;
    /** The run is enqueued: its id, the queue, and the workers connected to it now. */
    onStart?: (info: {run: string, queue: string, fingerprint: string, enqueued: number, workers: number | undefined}) => void;
    onWarning?: (message: string) => void;
}

export interface DistributedSummary extends EvalSummary {
    /** The run id (the prefix of its job ids). */
    run: string;
}

/**
 * ```ts
 * const summary = await runDistributedEvaluation("popqa.jsonl", {
 *     redis: "redis://10.0.0.5:6379", modelPath: "selfrag_llama2_7b.gguf", task: "popqa",
 *     onRecord: (record) => fs.appendFileSync("out.jsonl", JSON.stringify(record) + "\n")
 * });
 * ```
 * Records arrive in the order their questions finish, not in input order.
 */
export async function runDistributedEvaluation(file: string, options: DistributedEvaluationOptions): Promise<DistributedSummary> {
    // Planned here, so a bad option fails before anything is enqueued; jobs carry the plan as JSON.
    const plan = evaluationPlan(options);
    const task = plan.task;
    const profile = plan.profile;
    const long = plan.form === "long";
    const metrics = evaluationMetrics(options);
    const referenceFields = options.referenceFields ?? false;
    const settings: RunSettings = {
        task, profile: profile.name, long, referenceFields, metrics,
        shortForm: long ? {} : planOptions(plan), longForm: long ? planOptions(plan) : {},
        spelling: plan.surface.kind === "cli" ? "cli" : "api"
    };
    const queueName = options.queue ?? DEFAULT_QUEUE;
    const attempts = options.attempts ?? 3;
    const maxPending = options.maxPending ?? 10_000;
    const pollMs = options.pollMs ?? 100;
    const limit = options.limit != null ? requirePositiveInteger("limit", options.limit) : Number.POSITIVE_INFINITY;

    await checkRedis(options.redis, options.connectTimeoutMs);
    const fingerprint = await modelFingerprint(options.modelPath);
    const run = runId(file, settings, fingerprint);
    const tally = new EvalTally(metrics);

    // The questions of the file still to enqueue, counted as runEvaluation counts them.
    const occurrences = new Map<string, number>();
    /** Questions the output already holds: a job of theirs still in Redis (written, then the coordinator died) is removed. */
    const skipped = new Set<string>();
    let firstMalformed: string | undefined;
    async function* questions(): AsyncGenerator<{id: string, item: EvalItem}> {
        for await (const entry of readJsonRecords(file)) {
            if (tally.seen >= limit) return;
            const item = entry.kind === "record" ? toEvalItem(entry.value, entry.where, entry.line, task, profile) : entry.message;
            if (typeof item === "string") {
                if (options.strict) throw new SelfRagError(`${item} (--strict: stopping at the first malformed record)`, "INVALID_JSONL");
                tally.malformed++;
                firstMalformed ??= item;
                options.onMalformed?.(item);
                continue;
            }
            tally.seen++;
            const occurrence = (occurrences.get(item.id) ?? 0) + 1;
            occurrences.set(item.id, occurrence);
            if (options.skip?.has(item.id)) {
                tally.skipped++;
                skipped.add(jobId(run, item.id, occurrence));
                continue;
            }
            yield {id: jobId(run, item.id, occurrence), item};
        }
    }

    let sweepDue = false;
    let lastSweep = Date.now();
    const connection = redisConnection(options.redis, (event) => {
        if (event.kind === "back") sweepDue = true;
        options.onRedis?.(event);
    });
    const queue = new Queue<AnswerJobData>(queueName, {
        connection: connection.client,
        defaultJobOptions: {attempts, backoff: {type: "exponential", delay: options.backoffMs ?? 1000}, removeOnComplete: false, removeOnFail: false}
    });
    queue.on("error", connection.onBullError((error) => options.onWarning?.(error.message)));
    const pending = new Map<string, AnswerJobData>();
    const source = questions()[Symbol.asyncIterator]();
    let inputDone = false;

    const fill = async () => {
        while (!inputDone && pending.size < maxPending) {
            const batch: {name: string, data: AnswerJobData, opts: {jobId: string}}[] = [];
            while (batch.length < 500 && pending.size + batch.length < maxPending) {
                const next = await source.next();
                if (next.done) {
                    inputDone = true;
                    break;
                }
                batch.push({name: ANSWER_JOB, data: {run, fingerprint, settings, item: jobItem(next.value.item, referenceFields)}, opts: {jobId: next.value.id}});
            }
            if (batch.length === 0) break;
            // An id already in the queue (waiting, active, answered or failed) is not added again.
            await queue.addBulk(batch);
            for (const job of batch) pending.set(job.opts.jobId, job.data);
        }
    };

    const write = async (record: EvalRecord) => {
        tally.count(record);
        await options.onRecord?.(record);
        options.onProgress?.(tally.summary());
    };

    /** Writes every finished job of this run; returns how many. */
    const collect = async (): Promise<number> => {
        let written = 0;
        for (const state of ["completed", "failed"] as const) {
            const ids = await queue.getRanges([state], 0, -1);
            const leftovers = ids.filter((i) => skipped.has(i));
            await Promise.all(leftovers.map((id) => queue.remove(id)));
            for (const id of leftovers) skipped.delete(id);
            const mine = ids.filter((i) => pending.has(i));
            // A chunk of jobs at a time, their commands sent together (one round trip, not one per job).
            for (let i = 0; i < mine.length; i += 100) {
                const chunk = mine.slice(i, i + 100);
                const jobs = await Promise.all(chunk.map((id) => queue.getJob(id) as Promise<Job<AnswerJobData, EvalRecord> | undefined>));
                const done: string[] = [];
                for (const [k, job] of jobs.entries()) {
                    if (job == null) continue; // gone since the listing: the sweep re-adds it
                    const data = pending.get(chunk[k])!;
                    await write(state === "completed" ? answered(job, data) : errorRecord(data.item, decodeFailure(job.failedReason)));
                    done.push(chunk[k]);
                }
                // Written: Redis need not keep them (a restarted coordinator skips what the output holds).
                await Promise.all(done.map((id) => queue.remove(id)));
                for (const id of done) pending.delete(id);
                written += done.length;
            }
        }
        return written;
    };

    const answered = (job: Job<AnswerJobData, EvalRecord>, data: AnswerJobData): EvalRecord => {
        const value = job.returnvalue as EvalRecord | null;
        if (value == null || typeof value !== "object" || value.id !== data.item.id || typeof value.prediction !== "string") {
            return errorRecord(data.item, {code: "INTERNAL", message: `job ${job.id} completed without an answer record`});
        }
        return scoreRecord(value, data.item, metrics, task, profile);
    };

    /**
     * Jobs of this run that Redis no longer holds (restarted without persistence, or emptied by
     * hand) are enqueued again; otherwise the run would wait for them forever.
     */
    const sweep = async () => {
        sweepDue = false;
        lastSweep = Date.now();
        const ids = [...pending.keys()];
        let vanished = 0;
        for (let i = 0; i < ids.length; i += 200) {
            const states = await Promise.all(ids.slice(i, i + 200).map(async (id) => [id, await queue.getJobState(id)] as const));
            for (const [id, state] of states) {
                if (state !== "unknown" || !pending.has(id)) continue;
                await queue.add(ANSWER_JOB, pending.get(id)!, {jobId: id});
                vanished++;
            }
        }
        if (vanished > 0) {
            options.onWarning?.(`${vanished} question${vanished === 1 ? "'s job" : "s' jobs"} had vanished from the queue ` +
                "(Redis restarted without persistence?): enqueued again");
        }
    };

    try {
        await fill();
        let workers: number | undefined;
        try {
            workers = await queue.getWorkersCount();
        } catch {
            workers = undefined; // CLIENT LIST refused (managed Redis): not worth failing for
        }
        options.onStart?.({run, queue: queueName, fingerprint, enqueued: pending.size, workers});
        while (!(inputDone && pending.size === 0)) {
            throwIfAborted(options.signal);
            const written = await collect();
            await fill();
            if (sweepDue || Date.now() - lastSweep > 30_000) await sweep();
            if (written === 0 && !(inputDone && pending.size === 0)) await sleep(pollMs, options.signal);
        }
        if (tally.seen === 0) throw noQuestionsError(file, tally.malformed, firstMalformed);
    } finally {
        await source.return?.(undefined);
        // Closing on the way out: a failure here (Redis gone) must not hide the run's own outcome.
        await queue.close().catch(() => undefined);
        await connection.close();
    }
    return {...tally.summary(), run};
}

function throwIfAborted(signal: AbortSignal | undefined): void {
    if (signal?.aborted) {
        throw new SelfRagError("the evaluation was interrupted; the records written so far are complete, the questions stay queued: " +
            "--resume continues the run", "ABORTED");
    }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
        const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener("abort", done, {once: true});
    });
}
