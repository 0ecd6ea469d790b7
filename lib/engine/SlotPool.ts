import {SelfRagError} from "../errors.js";

/** Picks the free slot a lease would rather have first (one holding a prompt it can reuse), if any. */
export type SlotPreference = (free: readonly number[]) => number | undefined;

interface Waiter {
    count: number;
    prefer?: SlotPreference;
    resolve: (slots: number[]) => void;
    reject: (error: Error) => void;
    signal?: AbortSignal;
    onAbort?: () => void;
    since: number;
}

/**
 * The sequence slots of a context, handed out first come, first served. A question takes all the
 * slots it needs at once (short form `ndocs`, long form `beamWidth x ndocs`), so no two
 * questions can each hold part of what the other waits for; a waiter at the head is served
 * before later, smaller ones (no starvation of wide requests).
 */
export class SlotPool {
    private readonly free: number[];
    private readonly waiters: Waiter[] = [];
    private closedWith?: Error;
    /** Milliseconds waited by leases served so far, and how many. */
    public waitedMs = 0;
    public served = 0;

    public constructor(public readonly size: number) {
        this.free = Array.from({length: size}, (_, i) => size - 1 - i);
    }

    public get available(): number {
        return this.free.length;
    }

    public get inUse(): number {
        return this.size - this.free.length;
    }

    /** Leases waiting for slots. */
    public get waiting(): number {
        return this.waiters.length;
    }

    /**
     * Takes `count` free slots now (lowest numbers first; the one `prefer` picks, if any, first of
     * all) or throws SEQUENCE_OUT_OF_RANGE.
     */
    public take(count: number, prefer?: SlotPreference): number[] {
        if (!Number.isInteger(count) || count < 1 || count > this.free.length) {
            throw new SelfRagError(`asked for ${count} sequence slot(s) but only ${this.free.length} of ` +
                `${this.size} are free; load the model with more \`sequences\``, "SEQUENCE_OUT_OF_RANGE");
        }
        const preferred = prefer?.(this.free);
        const at = preferred == null ? -1 : this.free.indexOf(preferred);
        if (at < 0) return this.free.splice(this.free.length - count, count).reverse();
        this.free.splice(at, 1);
        return [preferred!, ...(count > 1 ? this.free.splice(this.free.length - (count - 1), count - 1).reverse() : [])];
    }

    /** Waits (FIFO) until `count` slots are free and takes them; an aborted wait rejects with ABORTED. */
    public lease(count: number, signal?: AbortSignal, prefer?: SlotPreference): Promise<number[]> {
        if (this.closedWith != null) return Promise.reject(this.closedWith);
        this.check(count);
        if (signal?.aborted) return Promise.reject(abortedWhileWaiting(signal));
        if (this.waiters.length === 0 && count <= this.free.length) {
            this.served++;
            return Promise.resolve(this.take(count, prefer));
        }
        return new Promise((resolve, reject) => {
            const waiter: Waiter = {count, prefer, resolve, reject, signal, since: performance.now()};
            if (signal != null) {
                waiter.onAbort = () => {
                    const at = this.waiters.indexOf(waiter);
                    if (at < 0) return;
                    this.waiters.splice(at, 1);
                    reject(abortedWhileWaiting(signal));
                    this.serve(); // a wide waiter leaving may unblock narrower ones behind it
                };
                signal.addEventListener("abort", waiter.onAbort, {once: true});
            }
            this.waiters.push(waiter);
        });
    }

    /** Gives slots back and serves waiters in order. */
    public give(slots: readonly number[]): void {
        for (const seq of slots) {
            if (!Number.isInteger(seq) || seq < 0 || seq >= this.size || this.free.includes(seq)) {
                throw new SelfRagError(`slot ${seq} is not leased from this pool`, "INVALID_ARGUMENT");
            }
            this.free.push(seq);
        }
        this.free.sort((a, b) => b - a);
        this.serve();
    }

    /** Rejects every waiter and every later lease with `error`. */
    public close(error: Error): void {
        this.closedWith = error;
        for (const w of this.waiters.splice(0)) {
            if (w.onAbort != null) w.signal?.removeEventListener("abort", w.onAbort);
            w.reject(error);
        }
    }

    private serve(): void {
        while (this.waiters.length > 0 && this.waiters[0].count <= this.free.length) {
            const w = this.waiters.shift()!;
            if (w.onAbort != null) w.signal?.removeEventListener("abort", w.onAbort);
            this.waitedMs += performance.now() - w.since;
            this.served++;
            w.resolve(this.take(w.count, w.prefer));
        }
    }

    private check(count: number): void {
        if (!Number.isInteger(count) || count < 1 || count > this.size) {
            throw new SelfRagError(`cannot lease ${count} sequence slot(s): the context has ${this.size}; ` +
                "load the model with more `sequences` or ask for fewer (ndocs, beamWidth)", "SEQUENCE_OUT_OF_RANGE");
        }
    }
}

export function abortedWhileWaiting(signal: AbortSignal): SelfRagError {
    return abortError(signal, "the request was aborted");
}

/** The error an aborted request rejects with: TIMEOUT when the signal's reason says so, else ABORTED. */
export function abortError(signal: AbortSignal | undefined, message: string): SelfRagError {
    const reason = signal?.reason as {code?: string, message?: string} | undefined;
    if (reason instanceof SelfRagError) return reason;
    if (reason?.code === "TIMEOUT") return new SelfRagError(reason.message ?? "the request timed out", "TIMEOUT");
    return new SelfRagError(message, "ABORTED");
}
