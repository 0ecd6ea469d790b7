import type {DecodingContext} from "./DecodingContext.js";
import {abortError} from "./SlotPool.js";

/**
 * The slots one question holds, from lease to release. Aborting the question's signal cancels
 * whatever work is queued or running on them (it rejects with ABORTED at the next step) and the
 * flow's `finally` gives them back, so an aborted request frees its slots mid-generation.
 * A flow that reuses slots (the long-form search) takes and puts them inside its lease.
 */
export class SlotLease {
    private readonly spare: number[];
    private readonly held: Set<number>;
    private readonly onAbort?: () => void;
    private closed = false;

    private constructor(private readonly ctx: DecodingContext, slots: number[], private readonly signal?: AbortSignal, firstTaken?: number) {
        this.held = new Set(slots);
        this.spare = slots.filter((seq) => seq !== firstTaken).sort((a, b) => b - a);
        if (firstTaken != null) this.spare.push(firstTaken);
        if (signal != null) {
            this.onAbort = () => this.ctx.cancel(...this.held);
            signal.addEventListener("abort", this.onAbort, {once: true});
        }
    }

    /**
     * Waits for `count` slots of the context's pool (FIFO). With `prompt`: the first slot `take`
     * hands out is the one that may already hold the prompt's start (`DecodingContext.reusePrefix`).
     */
    public static async acquire(ctx: DecodingContext, count: number, signal?: AbortSignal, prompt?: Int32Array): Promise<SlotLease> {
        const slots = await ctx.lease(count, signal, prompt);
        return new SlotLease(ctx, slots, signal, prompt != null ? slots[0] : undefined);
    }

    public get size(): number {
        return this.held.size;
    }

    /** Throws the abort error if the question was aborted (between awaits that touch no slot). */
    public checkAborted(): void {
        if (this.signal?.aborted) throw abortError(this.signal, "the request was aborted");
    }

    /** Takes slots of this lease that no work of the question uses (lowest first). */
    public take(count: number): number[] {
        if (count > this.spare.length) throw new Error(`internal: lease of ${this.size} slots has ${this.spare.length} spare, ${count} asked`);
        return this.spare.splice(this.spare.length - count, count).reverse();
    }

    /** Clears slots and keeps them for later use by the same question. */
    public async put(...slots: number[]): Promise<void> {
        if (this.closed) return;
        if (slots.length === 0) return;
        const cleared = this.ctx.clear(...slots);
        for (const seq of slots) this.spare.push(seq);
        this.spare.sort((a, b) => b - a);
        await cleared;
    }

    /** Gives slots back to the context's pool before the question ends (a finished candidate). */
    public async give(...slots: number[]): Promise<void> {
        const mine = slots.filter((seq) => this.held.delete(seq));
        if (mine.length === 0) return;
        const at = new Set(mine);
        for (let i = this.spare.length - 1; i >= 0; i--) if (at.has(this.spare[i])) this.spare.splice(i, 1);
        // Flows call this without waiting (a finished candidate's slot): it must never reject, or an
        // aborted request's late release would be an unhandled rejection that ends the process.
        await this.ctx.release(...mine).catch(() => undefined);
    }

    /** Gives a slot back keeping its first `tokens.length` positions (its prompt) for a later question (`DecodingContext.releaseKeeping`). */
    public async giveKeeping(seq: number, tokens: Int32Array): Promise<void> {
        if (!this.held.delete(seq)) return;
        const at = this.spare.indexOf(seq);
        if (at >= 0) this.spare.splice(at, 1);
        await this.ctx.releaseKeeping(seq, tokens).catch(() => undefined);
    }

    /** Gives every slot back; idempotent. Never throws: the context may have been disposed. */
    public async close(): Promise<void> {
        if (this.closed) return;
        this.closed = true;
        if (this.onAbort != null) this.signal?.removeEventListener("abort", this.onAbort);
        const slots = [...this.held];
        this.held.clear();
        this.spare.length = 0;
        if (slots.length === 0 || this.ctx.disposed) return;
        await this.ctx.release(...slots).catch(() => undefined);
    }
}
