// Admission of concurrent requests to one model. Batching is not done here: the engine's step
// loop batches whatever questions are in flight, whatever their options. The scheduler only
// decides who may enter and for how long: a queue limit (requests waiting for slots), first
// come first served (the slot pool is FIFO), abort that frees a request's slots mid-generation,
// a per-request timeout, and counters for /v1/stats and /metrics.
//
// "Waiting for slots" is what the queue limit counts: a request admitted while its slots are
// free is not queued even before its flow reaches the pool (retrieval, tokenizing), so a burst
// of requests that fit the free slots is never refused with QUEUE_FULL.
import {planQuestion, slotsNeeded, type LongFormPlan, type QuestionPlan, type ShortFormPlan} from "../selfrag/plan.js";
import {SelfRagError, requirePositiveInteger, requireNumberInRange} from "../errors.js";
import {abortError} from "../engine/SlotPool.js";
import type {AnswerEvent} from "../selfrag/events.js";
import type {LongFormAnswer, LongFormOptions, LongFormQuestion} from "../selfrag/LongForm.js";
import {complete, type RawCompletion, type RawCompletionOptions} from "../selfrag/RawCompletion.js";
import type {ShortFormAnswer, ShortFormOptions, ShortFormQuestion} from "../selfrag/ShortForm.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {EngineMonitor} from "./EngineMonitor.js";

export interface RequestSchedulerOptions {
    /** Requests admitted but still waiting for slots at most; one more is refused with QUEUE_FULL (1024). */
    maxQueue?: number;
    /** Default time limit per request in milliseconds, queue wait included (0: none). */
    timeoutMs?: number;
}

export interface RequestOptions {
    /** Aborting ends the request wherever it is: waiting, prefilling or generating; its slots are freed. */
    signal?: AbortSignal;
    /** Overrides the scheduler's timeout for this request (0: none). */
    timeoutMs?: number;
    /** Called once the request is admitted (not refused: QUEUE_FULL, closed), before it waits for slots. */
    onAdmitted?: () => void;
    /** Progress: the retrieval decision, then each scored candidate (short form) or segment (long form). */
    onEvent?: (event: AnswerEvent) => void;
}

export interface SchedulerStats {
    /** Admitted, waiting for slots (those that the free slots would serve at once are not counted). */
    queued: number;
    /** Holding slots. */
    running: number;
    admitted: number;
    completed: number;
    failed: number;
    aborted: number;
    timedOut: number;
    rejected: number;
    /** Mean wait for slots (ms) of the requests that started. */
    meanQueueWaitMs: number;
    /** Mean time from admission to the first event (the retrieval decision), ms. */
    meanTimeToFirstEventMs: number;
}

type Kind = "short" | "long";

interface Entry {
    controller: AbortController;
    started: boolean;
    /** The slots its question will lease (an upper bound when a retriever chooses the passages). */
    need: number;
    done?: Promise<unknown>;
}

/**
 * ```ts
 * const scheduler = new RequestScheduler(model, {timeoutMs: 60_000});
 * // any number of concurrent callers, each with its own options; they share decode steps
 * const [a, b] = await Promise.all([
 *     scheduler.answer({question: "Who wrote Carmen?"}, {retriever, threshold: 0.1}),
 *     scheduler.answerLong({question: "Tell me about Bizet."}, {retriever, beamWidth: 2})
 * ]);
 * await scheduler.close();
 * ```
 */
export class RequestScheduler {
    public readonly monitor: EngineMonitor;
    private readonly maxQueue: number;
    private readonly timeoutMs: number;
    /** In admission order, which is the slot pool's order. */
    private readonly inflight = new Set<Entry>();
    private closed = false;
    private readonly counters = {admitted: 0, completed: 0, failed: 0, aborted: 0, timedOut: 0, rejected: 0};
    private waitTotal = 0;
    private waitCount = 0;
    private firstEventTotal = 0;
    private firstEventCount = 0;

    public constructor(private readonly model: SelfRagModel, options: RequestSchedulerOptions = {}) {
        this.maxQueue = requirePositiveInteger("maxQueue", options.maxQueue ?? 1024, 1 << 20);
        const timeoutMs = options.timeoutMs ?? 0;
        requireNumberInRange("timeoutMs", timeoutMs, 0, Number.MAX_SAFE_INTEGER);
        this.timeoutMs = timeoutMs;
        this.monitor = new EngineMonitor(model.context);
    }

    /** Short-form Self-RAG for one question. */
    public answer(question: string | ShortFormQuestion, options: ShortFormOptions | ShortFormPlan = {}, request: RequestOptions = {}): Promise<ShortFormAnswer> {
        const q = typeof question === "string" ? {question} : question;
        const plan = planOrUndefined("short", options) as ShortFormPlan | undefined;
        return this.run("short", slotsOf(q, plan), request, (control) => this.model.answer(q, plan ?? options, control));
    }

    /** Long-form Self-RAG for one question. */
    public answerLong(question: string | LongFormQuestion, options: LongFormOptions | LongFormPlan = {}, request: RequestOptions = {}): Promise<LongFormAnswer> {
        const q = typeof question === "string" ? {question} : question;
        const plan = planOrUndefined("long", options) as LongFormPlan | undefined;
        return this.run("long", slotsOf(q, plan), request, (control) => this.model.answerLong(q, plan ?? options, control));
    }

    /** A raw prompt completed greedily (POST /v1/completions): one slot, admitted like a question. */
    public complete(prompt: string, options: RawCompletionOptions, request: RequestOptions & {onText?: (delta: string) => void} = {}): Promise<RawCompletion> {
        return this.run("short", 1, request, (control) => complete(this.model, prompt, options,
            {...control, onText: (delta) => !control.signal.aborted && request.onText?.(delta)}));
    }

    public get stats(): SchedulerStats {
        // An aborted request has been answered; its flow may still be cleaning up, but it no longer counts.
        let running = 0;
        for (const r of this.inflight) if (r.started && !r.controller.signal.aborted) running++;
        return {
            queued: this.waiting(), running, ...this.counters,
            meanQueueWaitMs: this.waitCount > 0 ? this.waitTotal / this.waitCount : 0,
            meanTimeToFirstEventMs: this.firstEventCount > 0 ? this.firstEventTotal / this.firstEventCount : 0
        };
    }

    /** Refuses new requests, ends those still waiting for slots (SCHEDULER_CLOSED) and waits for the running ones. */
    public async close(): Promise<void> {
        this.closed = true;
        for (const r of this.inflight) {
            if (!r.started) r.controller.abort(new SelfRagError("the scheduler was closed before this request started", "SCHEDULER_CLOSED"));
        }
        await Promise.allSettled([...this.inflight].map((r) => r.done));
        this.monitor.stop();
    }

    /**
     * Requests that wait for slots: those not started, taken in the pool's FIFO order, from the
     * first whose slots are not free (the ones before it are served by the free slots; the pool
     * serves no later request before it).
     */
    private waiting(): number {
        let free = this.model.context.slots.available;
        let queued = 0;
        for (const r of this.inflight) {
            if (r.started || r.controller.signal.aborted) continue;
            if (queued === 0 && r.need <= free) free -= r.need;
            else queued++;
        }
        return queued;
    }

    private async run<R>(_kind: Kind, need: number, request: RequestOptions, start: (control: {signal: AbortSignal, onEvent: (e: AnswerEvent) => void,
        onStart: () => void}) => Promise<R>): Promise<R> {
        if (this.closed) throw new SelfRagError("the scheduler is closed", "SCHEDULER_CLOSED");
        if (request.signal?.aborted) throw abortError(request.signal, "the request was aborted before it ran");
        const controller = new AbortController();
        const entry: Entry = {controller, started: false, need};
        // Admitted unless it would wait behind maxQueue others: counted as it would be once in.
        this.inflight.add(entry);
        const queued = this.waiting();
        if (queued > this.maxQueue) {
            this.inflight.delete(entry);
            this.counters.rejected++;
            throw new SelfRagError(`${queued - 1} requests are already waiting for slots (maxQueue ${this.maxQueue}); try again later`, "QUEUE_FULL");
        }
        const admittedAt = performance.now();
        let firstEvent = false;
        const forward = () => controller.abort(request.signal!.reason ?? new SelfRagError("the request was aborted", "ABORTED"));
        request.signal?.addEventListener("abort", forward, {once: true});
        const timeoutMs = request.timeoutMs ?? this.timeoutMs;
        const timer = timeoutMs > 0
            ? setTimeout(() => controller.abort(new SelfRagError(`the request took longer than its time limit of ${timeoutMs} ms`, "TIMEOUT")), timeoutMs)
            : undefined;
        this.counters.admitted++;
        try {
            request.onAdmitted?.();
            entry.done = start({
                signal: controller.signal,
                onStart: () => {
                    entry.started = true;
                    this.waitTotal += performance.now() - admittedAt;
                    this.waitCount++;
                },
                onEvent: (event) => {
                    if (!firstEvent) {
                        firstEvent = true;
                        this.firstEventTotal += performance.now() - admittedAt;
                        this.firstEventCount++;
                    }
                    if (!controller.signal.aborted) request.onEvent?.(event);
                }
            });
            // An abort (client gone, timeout) answers at once; the flow cleans up behind it (its
            // work is cancelled at the next decode step and its slots released).
            entry.done.catch(() => undefined);
            const result = await Promise.race([entry.done as Promise<R>, rejectOnAbort(controller.signal)]);
            this.counters.completed++;
            return result;
        } catch (error) {
            if (controller.signal.aborted) {
                const reasonCode = (controller.signal.reason as SelfRagError | undefined)?.code;
                if (reasonCode === "SCHEDULER_CLOSED") throw controller.signal.reason as SelfRagError;
                // Whatever part of the flow noticed first, the caller learns why it was stopped.
                const reason = abortError(controller.signal, "the request was aborted");
                if (reason.code === "TIMEOUT") this.counters.timedOut++;
                else this.counters.aborted++;
                throw reason;
            }
            this.counters.failed++;
            throw error;
        } finally {
            if (timer != null) clearTimeout(timer);
            request.signal?.removeEventListener("abort", forward);
            void Promise.resolve(entry.done).catch(() => undefined).finally(() => this.inflight.delete(entry));
        }
    }
}

/** The slots a question will lease, from its plan; 1 when the options do not plan (the flow refuses them itself). */
/** The options planned once here (the flow then trusts the plan), or undefined when they are bad: the flow throws that error, counted as failed. */
function planOrUndefined(form: Kind, options: unknown): QuestionPlan | undefined {
    try {
        return planQuestion(form, options);
    } catch {
        return undefined; // the flow refuses the same options again and reports them
    }
}

/** Slots a question of this plan holds (1 for options the flow will refuse). */
function slotsOf(question: {passages?: readonly unknown[]}, plan: QuestionPlan | undefined): number {
    if (plan == null) return 1;
    const passages = question.passages ?? (plan.retriever == null ? plan.passages : undefined);
    return slotsNeeded(plan, Array.isArray(passages) ? passages.length : undefined);
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
    return new Promise((_resolve, reject) => {
        if (signal.aborted) reject(abortError(signal, "the request was aborted"));
        else signal.addEventListener("abort", () => reject(abortError(signal, "the request was aborted")), {once: true});
    });
}
