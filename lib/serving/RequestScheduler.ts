// Request batching for a model shared by many callers (an HTTP server, a job queue).
//
// The engine does its best work on a batch: answerBatch prefills every prompt in one decode,
// forks passages and generates every candidate of a wave in shared decode steps. Callers, though,
// arrive one question at a time. The scheduler queues them; whenever the model is free it takes
// the oldest request and every queued request that can share its batch (same kind, same
// batch-level options) up to `maxBatch`, and runs them as one answerBatch / answerLongBatch.
// Requests arriving while a batch runs form the next one, so under load batches fill up by
// themselves and with one caller nothing waits; requests submitted in the same tick start together.
//
// A batch that fails is re-run one request at a time, so one bad request (a prompt longer than
// the context, say) fails alone instead of failing the requests it happened to share a batch
// with.
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import type {LongFormAnswer, LongFormOptions, LongFormQuestion} from "../selfrag/LongForm.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import type {ShortFormAnswer, ShortFormOptions, ShortFormQuestion} from "../selfrag/ShortForm.js";

export interface RequestSchedulerOptions {
    /** Questions per batch (32). answerBatch splits a batch into waves that fit the slots. */
    maxBatch?: number;
    /** Requests waiting at most; one more is refused with QUEUE_FULL (1024). */
    maxQueue?: number;
}

export interface RequestOptions {
    /** Aborting removes a request that has not started; a started one runs to the end of its batch. */
    signal?: AbortSignal;
}

export interface SchedulerStats {
    queued: number;
    running: number;
    /** Batches run, and the requests they carried (requests / batches = mean batch size). */
    batches: number;
    requests: number;
    /** Batches that failed and were re-run one request at a time. */
    splitBatches: number;
}

type Pending<Q, O, R> = {
    kind: "short" | "long";
    question: Q;
    options: O;
    key: string;
    resolve: (value: R) => void;
    reject: (error: Error) => void;
    signal?: AbortSignal;
    onAbort?: () => void;
};

type AnyPending = Pending<ShortFormQuestion, ShortFormOptions, ShortFormAnswer> | Pending<LongFormQuestion, LongFormOptions, LongFormAnswer>;

/**
 * ```ts
 * const scheduler = new RequestScheduler(model, {maxBatch: 32});
 * // concurrent callers; those queued together run as one answerBatch
 * const [a, b] = await Promise.all([
 *     scheduler.answer({question: "Who wrote Carmen?"}, {retriever}),
 *     scheduler.answer({question: "Where is Paris?"}, {retriever})
 * ]);
 * await scheduler.close();
 * ```
 */
export class RequestScheduler {
    private readonly queue: AnyPending[] = [];
    private readonly maxBatch: number;
    private readonly maxQueue: number;
    private runningCount = 0;
    private pumpScheduled = false;
    private closed = false;
    private idle: Promise<void> = Promise.resolve();
    private readonly counters = {batches: 0, requests: 0, splitBatches: 0};
    /** Identities of the functions (retrievers) seen in options, for batchKey. */
    private readonly functionIds = new WeakMap<object, number>();
    private nextFunctionId = 1;

    public constructor(private readonly model: SelfRagModel, options: RequestSchedulerOptions = {}) {
        this.maxBatch = requirePositiveInteger("maxBatch", options.maxBatch ?? 32, 4096);
        this.maxQueue = requirePositiveInteger("maxQueue", options.maxQueue ?? 1024, 1 << 20);
    }

    /** Short-form Self-RAG for one question, batched with other queued questions of the same options. */
    public answer(question: string | ShortFormQuestion, options: ShortFormOptions = {}, request: RequestOptions = {}): Promise<ShortFormAnswer> {
        const q = typeof question === "string" ? {question} : question;
        return this.enqueue({kind: "short", question: q, options, key: "short\0" + this.batchKey(options)}, request);
    }

    /** Long-form Self-RAG for one question, batched with other queued questions of the same options. */
    public answerLong(question: string | LongFormQuestion, options: LongFormOptions = {}, request: RequestOptions = {}): Promise<LongFormAnswer> {
        const q = typeof question === "string" ? {question} : question;
        return this.enqueue({kind: "long", question: q, options, key: "long\0" + this.batchKey(options)}, request);
    }

    public get stats(): SchedulerStats {
        return {queued: this.queue.length, running: this.runningCount, ...this.counters};
    }

    /** Refuses new requests, rejects queued ones (SCHEDULER_CLOSED) and waits for the running batch. */
    public async close(): Promise<void> {
        this.closed = true;
        for (const p of this.queue.splice(0)) {
            this.detach(p);
            p.reject(new SelfRagError("the scheduler was closed before this request ran", "SCHEDULER_CLOSED"));
        }
        await this.idle;
    }

    private enqueue<R>(entry: Omit<AnyPending, "resolve" | "reject">, request: RequestOptions): Promise<R> {
        if (this.closed) return Promise.reject(new SelfRagError("the scheduler is closed", "SCHEDULER_CLOSED"));
        if (request.signal?.aborted) return Promise.reject(abortError());
        if (this.queue.length >= this.maxQueue) {
            return Promise.reject(new SelfRagError(`${this.queue.length} requests are already waiting (maxQueue ${this.maxQueue}); try again later`,
                "QUEUE_FULL"));
        }
        return new Promise<R>((resolve, reject) => {
            const pending = {...entry, resolve, reject, signal: request.signal} as AnyPending;
            if (request.signal != null) {
                pending.onAbort = () => {
                    const at = this.queue.indexOf(pending);
                    if (at < 0) return; // already running: it finishes with its batch
                    this.queue.splice(at, 1);
                    reject(abortError());
                };
                request.signal.addEventListener("abort", pending.onAbort, {once: true});
            }
            this.queue.push(pending);
            this.schedulePump();
        });
    }

    /**
     * Batches start on a microtask, not inside answer(): requests submitted in the same tick (a
     * loop over a file, Promise.all over questions) then start as one batch.
     */
    private schedulePump(): void {
        if (this.pumpScheduled) return;
        this.pumpScheduled = true;
        queueMicrotask(() => {
            this.pumpScheduled = false;
            this.pump();
        });
    }

    private pump(): void {
        if (this.runningCount > 0 || this.queue.length === 0) return;
        const head = this.queue[0];
        const batch: AnyPending[] = [];
        for (let i = 0; i < this.queue.length && batch.length < this.maxBatch;) {
            if (this.queue[i].key === head.key) batch.push(...this.queue.splice(i, 1));
            else i++;
        }
        for (const p of batch) this.detach(p);
        this.runningCount = batch.length;
        this.counters.batches++;
        this.counters.requests += batch.length;
        this.idle = this.run(batch).finally(() => {
            this.runningCount = 0;
            // The next batch starts on a fresh tick, so callers resolved just now can queue first.
            setImmediate(() => this.schedulePump());
        });
    }

    private async run(batch: AnyPending[]): Promise<void> {
        try {
            const results = await this.execute(batch);
            batch.forEach((p, i) => (p.resolve as (value: unknown) => void)(results[i]));
        } catch (error) {
            if (batch.length === 1) {
                batch[0].reject(error as Error);
                return;
            }
            // Re-run one by one: only the request(s) at fault fail.
            this.counters.splitBatches++;
            for (const p of batch) {
                try {
                    (p.resolve as (value: unknown) => void)((await this.execute([p]))[0]);
                } catch (single) {
                    p.reject(single as Error);
                }
            }
        }
    }

    private execute(batch: AnyPending[]): Promise<unknown[]> {
        const first = batch[0];
        if (first.kind === "short") {
            return this.model.answerBatch(batch.map((p) => p.question as ShortFormQuestion), first.options);
        }
        return this.model.answerLongBatch(batch.map((p) => p.question as LongFormQuestion), first.options);
    }

    /**
     * Requests share a batch when their batch-level options are equal. Functions (a retriever) are
     * compared by identity: the same retriever object batches, two different ones do not.
     */
    private batchKey(options: object): string {
        return JSON.stringify(options, (_key, value: unknown) => {
            if (typeof value !== "function") return value;
            let id = this.functionIds.get(value);
            if (id == null) this.functionIds.set(value, id = this.nextFunctionId++);
            return `\0fn${id}`;
        });
    }

    private detach(p: AnyPending): void {
        if (p.onAbort != null) p.signal?.removeEventListener("abort", p.onAbort);
    }
}

function abortError(): SelfRagError {
    return new SelfRagError("the request was aborted before it ran", "ABORTED");
}

