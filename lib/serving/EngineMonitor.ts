import type {DecodingContext} from "../engine/DecodingContext.js";
import type {NativeContextStats} from "../engine/types.js";

interface Sample {
    at: number;
    stats: NativeContextStats;
}

export interface EngineReport extends NativeContextStats {
    /** Slots held by questions now. */
    activeSlots: number;
    sequences: number;
    /** Leases waiting for slots now. */
    waitingForSlots: number;
    /** Slot-steps doing work / slot-steps available, since the context was created. */
    occupancy: number;
    /** The same over the last minute (or since the monitor started, if sooner). */
    occupancyLastMinute: number;
    /** Generated tokens per second over the last minute. */
    tokensPerSecondLastMinute: number;
}

/**
 * Reads the engine's counters (atomics, safe while the loop runs) and keeps one sample a second
 * for a minute, so rates and occupancy can be reported over the last minute as well as since start.
 */
export class EngineMonitor {
    private readonly samples: Sample[] = [];
    private readonly timer: NodeJS.Timeout;

    public constructor(private readonly ctx: DecodingContext) {
        this.sample();
        this.timer = setInterval(() => this.sample(), 1000);
        this.timer.unref();
    }

    public report(): EngineReport {
        const now = this.ctx.stats;
        const oldest = this.samples[0]?.stats ?? now;
        const seconds = Math.max(1e-3, (performance.now() - (this.samples[0]?.at ?? performance.now())) / 1000);
        const ratio = (busy: number, all: number) => (all > 0 ? busy / all : 0);
        return {
            ...now,
            activeSlots: this.ctx.slots.inUse,
            sequences: this.ctx.sequences,
            waitingForSlots: this.ctx.slots.waiting,
            occupancy: ratio(now.busySlotSteps, now.slotSteps),
            occupancyLastMinute: ratio(now.busySlotSteps - oldest.busySlotSteps, now.slotSteps - oldest.slotSteps),
            tokensPerSecondLastMinute: (now.generatedTokens - oldest.generatedTokens) / seconds
        };
    }

    public stop(): void {
        clearInterval(this.timer);
    }

    private sample(): void {
        if (this.ctx.disposed) return;
        this.samples.push({at: performance.now(), stats: this.ctx.stats});
        if (this.samples.length > 61) this.samples.shift();
    }
}
