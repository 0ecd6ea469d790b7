import {SelfRagError} from "../errors.js";
import type {NativeContext, NativeContextInfo, NativeContextStats, NativeGate, NativeRowBlock, NativeSegment,
    NativeSequenceInfo} from "./types.js";

/**
 * A llama.cpp context with N sequence slots that decode together: one `llama_decode` per step for
 * every active slot, KV fork so siblings share a prefix, fused reflection extraction per row.
 * Operations are queued (one native operation runs at a time); slots are handed out with
 * `acquire()` and given back with `release()`.
 *
 * ```ts
 * const [a, b] = ctx.acquire(2);
 * await ctx.evaluate([{seq: a, tokens: prompt}]);
 * await ctx.fork(a, b);
 * await ctx.evaluate([{seq: a, tokens: passage1}, {seq: b, tokens: passage2}]);
 * const [s1, s2] = await ctx.generate([{seq: a, maxTokens: 64}, {seq: b, maxTokens: 64}]);
 * await ctx.release(a, b);
 * ```
 */
export class DecodingContext {
    private native: NativeContext | undefined;
    private readonly free: number[];
    private readonly inUse = new Set<number>();
    private queue: Promise<unknown> = Promise.resolve();
    public readonly sequences: number;
    public readonly reflectionIds: Int32Array;

    /** @internal */
    public constructor(native: NativeContext, reflectionIds: Int32Array) {
        this.native = native;
        this.reflectionIds = reflectionIds;
        this.sequences = native.info().sequences;
        this.free = Array.from({length: this.sequences}, (_, i) => this.sequences - 1 - i);
    }

    public get info(): NativeContextInfo {
        return this.handle().info();
    }

    /** Tokens decoded, decode calls and rows extracted since the context was created. */
    public get stats(): NativeContextStats {
        return this.handle().stats();
    }

    public get freeSlots(): number {
        return this.free.length;
    }

    /** Takes `count` free slots (lowest numbers first); throws SEQUENCE_OUT_OF_RANGE when fewer are free. */
    public acquire(count = 1): number[] {
        this.handle();
        if (count > this.free.length) {
            throw new SelfRagError(`asked for ${count} sequence slot(s) but only ${this.free.length} of ` +
                `${this.sequences} are free; load the model with more \`sequences\``, "SEQUENCE_OUT_OF_RANGE");
        }
        const slots: number[] = [];
        for (let i = 0; i < count; i++) {
            const seq = this.free.pop()!;
            this.inUse.add(seq);
            slots.push(seq);
        }
        return slots;
    }

    /**
     * Returns slots to the pool; their KV is cleared in queue order, so a later acquire() and
     * evaluate() of the same slot always see it empty.
     */
    public release(...slots: number[]): Promise<void> {
        this.handle();
        const released = slots.filter((seq) => this.inUse.delete(seq));
        for (const seq of released) this.free.push(seq);
        this.free.sort((a, b) => b - a);
        return this.enqueue(async (native) => {
            for (const seq of released) native.release(seq);
        });
    }

    /** Appends tokens to each slot in one batched decode; summarises the last (or every) position. */
    public evaluate(items: readonly {seq: number, tokens: Int32Array}[], options: {allPositions?: boolean} = {}): Promise<NativeRowBlock> {
        return this.enqueue((native) => native.evaluate(items, options.allPositions ?? false));
    }

    /** Greedy segments for the slots, decoded together until each stops. */
    public generate(items: readonly {seq: number, maxTokens: number}[],
        options: {stopTokens?: Int32Array, gate?: NativeGate} = {}): Promise<NativeSegment[]> {
        return this.enqueue((native) => native.generate(items, options));
    }

    /** Makes `dst` a copy of `src` (KV and pending distribution); with a unified KV nothing is copied. */
    public fork(src: number, dst: number): Promise<void> {
        return this.enqueue(async (native) => native.fork(src, dst));
    }

    /** Drops everything after the first `nPast` tokens of a slot. */
    public trim(seq: number, nPast: number): Promise<void> {
        return this.enqueue(async (native) => native.trim(seq, nPast));
    }

    public sequenceInfo(seq: number): NativeSequenceInfo {
        return this.handle().sequenceInfo(seq);
    }

    /** Waits for queued work, then frees the KV cache. Idempotent. */
    public async dispose(): Promise<void> {
        if (this.native == null) return;
        await this.queue.catch(() => undefined);
        this.native?.dispose();
        this.native = undefined;
    }

    public get disposed(): boolean {
        return this.native == null;
    }

    private handle(): NativeContext {
        if (this.native == null) throw new SelfRagError("the context has been disposed", "CONTEXT_DISPOSED");
        return this.native;
    }

    private enqueue<T>(operation: (native: NativeContext) => Promise<T>): Promise<T> {
        const run = this.queue.then(() => operation(this.handle()));
        this.queue = run.catch(() => undefined);
        return run;
    }
}
