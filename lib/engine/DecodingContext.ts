import {SelfRagError} from "../errors.js";
import type {NativeCompletion, NativeContext, NativeContextInfo, NativeContextStats, NativeRowBlock, NativeRows, NativeSegment,
    NativeSequenceInfo, NativeStopOptions, NativeWork} from "./types.js";
import {SlotPool} from "./SlotPool.js";
import {markPhase} from "../timings.js";

interface Waiting {
    work: NativeWork;
    resolve: (done: NativeCompletion) => void;
    reject: (error: Error) => void;
}

/**
 * A llama.cpp context with N sequence slots and one step loop (native/step_loop.cpp): every step
 * decodes one token for each generating slot plus prefill chunks of waiting work, whoever
 * submitted it. Any number of callers use it at once; work on one slot runs in the order it was
 * submitted, so a flow can submit fork, prefill and generate without waiting in between, and each
 * promise settles when its own work finishes. Slots are leased from a FIFO pool.
 *
 * ```ts
 * const [a, b] = await ctx.lease(2);
 * await ctx.prefill(a, prompt);
 * void ctx.fork(a, b);                       // ordered before b's prefill
 * const [s1, s2] = await Promise.all([
 *     ctx.prefill(a, passage1).then(() => ctx.generateOne(a, 64)),
 *     ctx.prefill(b, passage2).then(() => ctx.generateOne(b, 64))]);
 * await ctx.release(a, b);
 * ```
 */
export class DecodingContext {
    private native: NativeContext | undefined;
    private readonly inFlight = new Map<number, Waiting>();
    /** Work of the current tick, submitted in one native call so it joins one step. */
    private buffer: Waiting[] = [];
    private flushScheduled = false;
    /** Slots whose work was cancelled: later work on them fails at once, until they are cleared. */
    private readonly cancelled = new Set<number>();
    /** Free slots that still hold a prompt's KV from position 0 (`releaseKeeping`), and its tokens. */
    private readonly kept = new Map<number, Int32Array>();
    public readonly slots: SlotPool;
    public readonly sequences: number;
    public readonly reflectionIds: Int32Array;
    private readonly contextInfo: NativeContextInfo;

    /** @internal `create` wires the native callback to `complete`. */
    public constructor(createNative: (onComplete: (done: NativeCompletion[]) => void) => NativeContext, reflectionIds: Int32Array) {
        this.native = createNative((done) => this.complete(done));
        this.reflectionIds = reflectionIds;
        this.contextInfo = this.native.info();
        this.sequences = this.contextInfo.sequences;
        this.slots = new SlotPool(this.sequences);
    }

    public get info(): NativeContextInfo {
        this.handle();
        return this.contextInfo;
    }

    /** Decode counters, safe to read while the loop runs. */
    public get stats(): NativeContextStats {
        return this.handle().stats();
    }

    public get freeSlots(): number {
        return this.slots.available;
    }

    /** Takes `count` free slots now (lowest numbers first); throws SEQUENCE_OUT_OF_RANGE when fewer are free. */
    public acquire(count = 1): number[] {
        this.handle();
        const slots = this.slots.take(count);
        const stale = slots.filter((seq) => this.kept.delete(seq));
        if (stale.length > 0) void this.clear(...stale);
        return slots;
    }

    /**
     * Waits (first come, first served) for `count` slots, empty. With `prompt`, the first slot is
     * the free one whose kept prompt (see `releaseKeeping`) starts like it, if any: still holding
     * it for `reusePrefix`.
     */
    public async lease(count: number, signal?: AbortSignal, prompt?: Int32Array): Promise<number[]> {
        if (this.native == null) throw new SelfRagError("the context has been disposed", "CONTEXT_DISPOSED");
        const prefer = prompt != null && this.kept.size > 0 ? (free: readonly number[]) => this.bestKept(free, prompt) : undefined;
        const slots = await this.slots.lease(count, signal, prefer);
        const claimed = prompt != null && this.kept.has(slots[0]) ? slots[0] : -1;
        const stale = slots.filter((seq) => seq !== claimed && this.kept.delete(seq));
        if (stale.length > 0) void this.clear(...stale);
        return slots;
    }

    /**
     * Returns slots to the pool. Their KV is cleared before any later work on them runs (the
     * clear is ordered like every other operation), so the next lease always finds them empty.
     */
    public release(...slots: number[]): Promise<void> {
        this.handle();
        for (const seq of slots) this.kept.delete(seq);
        this.slots.give(slots);
        return this.clear(...slots);
    }

    /**
     * Prompt reuse across questions (what llama-server's per-slot prompt cache does): true when
     * free slots may keep a prompt's KV, i.e. with a unified cache that has a cell for every
     * position of every slot, so what a free slot keeps can never crowd out a running one.
     */
    public get keepsPrompts(): boolean {
        const info = this.info;
        return info.unifiedKv && info.contextSize >= info.sequences * info.contextPerSequence;
    }

    /**
     * Returns a slot to the pool keeping the KV of its first `tokens.length` positions, which hold
     * `tokens` (a question's prompt): a later lease with a prompt that starts the same way (a task
     * instruction, the prompt template) takes this slot and decodes only the rest. As `release`
     * when prompts are not kept.
     */
    public releaseKeeping(seq: number, tokens: Int32Array): Promise<void> {
        this.handle();
        if (!this.keepsPrompts || tokens.length === 0 || this.cancelled.has(seq)) return this.release(seq);
        this.kept.set(seq, tokens);
        this.slots.give([seq]);
        // Ordered before any work of the slot's next lease (submitted after this returns). Should
        // the cut fail, the slot is cleared, unless a lease already took it (its work then fails
        // on the slot's length, alone).
        return this.trim(seq, tokens.length).catch(() => {
            if (this.kept.get(seq) !== tokens) return undefined;
            this.kept.delete(seq);
            return this.clear(seq);
        });
    }

    /**
     * How many leading tokens of `prompt` a freshly leased slot already holds (its kept prompt's
     * common start, all but the prompt's last token at most, whose logits the caller needs): the
     * slot is cut to them, or cleared when none match. 0 for a slot that kept nothing.
     */
    public reusePrefix(seq: number, prompt: Int32Array): number {
        const kept = this.kept.get(seq);
        if (kept == null) return 0;
        this.kept.delete(seq);
        const reused = Math.min(commonStart(kept, prompt), prompt.length - 1);
        if (reused <= 0) {
            void this.clear(seq);
            return 0;
        }
        if (reused < kept.length) void this.trim(seq, reused);
        return reused;
    }

    /** The free slot whose kept prompt shares the longest start with `prompt` (at least one token). */
    private bestKept(free: readonly number[], prompt: Int32Array): number | undefined {
        let best: number | undefined;
        let bestLength = 0;
        for (const seq of free) {
            const kept = this.kept.get(seq);
            if (kept == null) continue;
            const length = commonStart(kept, prompt);
            if (length > bestLength) {
                best = seq;
                bestLength = length;
            }
        }
        return best;
    }

    /**
     * Clears slots' KV without returning them to the pool (a caller reusing its own slots). Never
     * rejects for a disposed context: its KV is gone anyway, and callers often do not wait.
     */
    public clear(...slots: number[]): Promise<void> {
        return handled(Promise.all(slots.map((seq) => this.submit({kind: "release", seq}).catch((error: SelfRagError) => {
            if (error.code !== "CONTEXT_DISPOSED") throw error;
        }))).then(() => undefined));
    }

    /**
     * Appends tokens to one slot; a row summarises the last position (every position with
     * allPositions). `shareWith`: more slots, at the same length, that get the same tokens decoded
     * once into shared KV cells (a prompt for all of a question's candidates; unified KV only).
     * A prefill submitted right after another on the same slot joins the same decode step.
     */
    public prefill(seq: number, tokens: Int32Array, options: {allPositions?: boolean, shareWith?: readonly number[]} = {}): Promise<NativeRows> {
        const work: NativeWork = {kind: "prefill", seq, tokens, allPositions: options.allPositions ?? false};
        if (options.shareWith != null && options.shareWith.length > 0) work.shareWith = Int32Array.from(options.shareWith);
        return handled(this.submit(work).then((c) => c.rows!));
    }

    /** Several prefills in one step; item i owns rows [rowOffsets[i], rowOffsets[i + 1]). */
    public evaluate(items: readonly {seq: number, tokens: Int32Array}[], options: {allPositions?: boolean} = {}): Promise<NativeRowBlock> {
        return handled(Promise.all(items.map((item) => this.prefill(item.seq, item.tokens, options)))
            .then((parts) => concatRows(parts, this.reflectionIds.length)));
    }

    /** One greedy segment, generated in whatever steps are running; settles when it stops. */
    public generateOne(seq: number, maxTokens: number, options: NativeStopOptions = {}): Promise<NativeSegment> {
        return handled(this.submit({kind: "generate", seq, maxTokens, ...options}).then((c) => c.segment!));
    }

    /** Segments for several slots (each item may carry its own stop options); settles when all stopped. */
    public generate(items: readonly ({seq: number, maxTokens: number} & NativeStopOptions)[],
        options: NativeStopOptions = {}): Promise<NativeSegment[]> {
        return handled(Promise.all(items.map((item) => this.generateOne(item.seq, item.maxTokens, {...options, ...stopOptionsOf(item)}))));
    }

    /** Makes `dst` a copy of `src` (KV and pending distribution); with a unified KV nothing is copied. */
    public fork(src: number, dst: number): Promise<void> {
        return handled(this.submit({kind: "fork", seq: src, dst}).then(() => undefined));
    }

    /** Drops everything after the first `nPast` tokens of a slot. */
    public trim(seq: number, nPast: number): Promise<void> {
        return handled(this.submit({kind: "trim", seq, nPast}).then(() => undefined));
    }

    /**
     * Ends every piece of work submitted so far on these slots at the next step (its promise
     * rejects with ABORTED), and refuses work submitted later until the slots are released or
     * cleared; the slots stay leased until released.
     */
    public cancel(...slots: number[]): void {
        if (this.native == null || slots.length === 0) return;
        this.flush();
        for (const seq of slots) this.cancelled.add(seq);
        this.native.cancel(Int32Array.from(slots));
    }

    public sequenceInfo(seq: number): NativeSequenceInfo {
        return this.handle().sequenceInfo(seq);
    }

    /** Stops the loop after its current step: work in flight rejects with CONTEXT_DISPOSED. Idempotent. */
    public async dispose(): Promise<void> {
        const native = this.native;
        if (native == null) return;
        this.flush();
        this.native = undefined;
        this.kept.clear();
        const error = new SelfRagError("the context was disposed before this work finished", "CONTEXT_DISPOSED");
        this.slots.close(error);
        native.dispose(); // delivers CONTEXT_DISPOSED for everything unfinished
        for (const w of this.inFlight.values()) w.reject(error);
        this.inFlight.clear();
    }

    public get disposed(): boolean {
        return this.native == null;
    }

    private handle(): NativeContext {
        if (this.native == null) throw new SelfRagError("the context has been disposed", "CONTEXT_DISPOSED");
        return this.native;
    }

    private submit(work: NativeWork): Promise<NativeCompletion> {
        if (this.native == null) return Promise.reject(new SelfRagError("the context has been disposed", "CONTEXT_DISPOSED"));
        if (work.kind === "release") {
            this.cancelled.delete(work.seq);
        } else if (this.cancelled.has(work.seq) || (work.kind === "fork" && this.cancelled.has(work.dst)) ||
            (work.kind === "prefill" && work.shareWith?.some((seq) => this.cancelled.has(seq)))) {
            return Promise.reject(new SelfRagError(`slot ${work.seq}: its work was cancelled (the request was aborted)`, "ABORTED"));
        }
        const promise = new Promise<NativeCompletion>((resolve, reject) => {
            this.buffer.push({work, resolve, reject});
            if (!this.flushScheduled) {
                this.flushScheduled = true;
                // Everything submitted in this turn of the event loop (every question's continuation
                // included) goes over in one call, so it joins the same step.
                setImmediate(() => this.flush());
            }
        });
        // Flows submit a slot's whole sequence of work at once and await only its end; when an
        // earlier item fails, the later ones fail too and must not surface as unhandled rejections.
        promise.catch(() => undefined);
        return promise;
    }

    private flush(): void {
        this.flushScheduled = false;
        const batch = this.buffer;
        this.buffer = [];
        if (batch.length === 0) return;
        const native = this.native;
        if (native == null) {
            for (const w of batch) w.reject(new SelfRagError("the context has been disposed", "CONTEXT_DISPOSED"));
            return;
        }
        try {
            this.register(batch, native.submit(batch.map((w) => w.work)));
        } catch {
            // One invalid item refused the call: submit one by one so only that item fails.
            for (const w of batch) {
                try {
                    this.register([w], native.submit([w.work]));
                } catch (error) {
                    w.reject(error as Error);
                }
            }
        }
    }

    private register(batch: Waiting[], ids: Float64Array): void {
        batch.forEach((w, i) => this.inFlight.set(ids[i], w));
    }

    private complete(done: NativeCompletion[]): void {
        markPhase("first-decode");
        for (const c of done) {
            const w = this.inFlight.get(c.id);
            if (w == null) continue;
            this.inFlight.delete(c.id);
            if (c.error != null) w.reject(c.error);
            else w.resolve(c);
        }
    }
}

/** Length of the common start of two token arrays. */
function commonStart(a: Int32Array, b: Int32Array): number {
    const n = Math.min(a.length, b.length);
    let i = 0;
    while (i < n && a[i] === b[i]) i++;
    return i;
}

/** Marks a promise as handled (callers that do not await it must not crash the process); awaiting it still throws. */
function handled<T>(promise: Promise<T>): Promise<T> {
    promise.catch(() => undefined);
    return promise;
}

function stopOptionsOf(item: NativeStopOptions): NativeStopOptions {
    const out: NativeStopOptions = {};
    if (item.stopTokens != null) out.stopTokens = item.stopTokens;
    if (item.gate != null) out.gate = item.gate;
    if (item.ignoreEos != null) out.ignoreEos = item.ignoreEos;
    return out;
}

function concatRows(parts: readonly NativeRows[], nIds: number): NativeRowBlock {
    const rows = parts.reduce((n, p) => n + p.argmax.length, 0);
    const block: NativeRowBlock = {
        argmax: new Int32Array(rows), argmaxLogprob: new Float32Array(rows), logSumExp: new Float32Array(rows),
        reflection: new Float32Array(rows * nIds), rowOffsets: new Int32Array(parts.length + 1)
    };
    let at = 0;
    parts.forEach((p, i) => {
        block.argmax.set(p.argmax, at);
        block.argmaxLogprob.set(p.argmaxLogprob, at);
        block.logSumExp.set(p.logSumExp, at);
        block.reflection.set(p.reflection, at * nIds);
        at += p.argmax.length;
        block.rowOffsets[i + 1] = at;
    });
    return block;
}
