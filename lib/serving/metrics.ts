// GET /metrics: the engine's and the scheduler's counters in Prometheus' text exposition format.
import type {SchedulerStats} from "./RequestScheduler.js";
import type {EngineReport} from "./EngineMonitor.js";

type Kind = "counter" | "gauge";

export function prometheusText(engine: EngineReport, scheduler: SchedulerStats): string {
    const lines: string[] = [];
    const metric = (name: string, kind: Kind, help: string, value: number | [Record<string, string>, number][]) => {
        lines.push(`# HELP selfrag_${name} ${help}`, `# TYPE selfrag_${name} ${kind}`);
        if (typeof value === "number") lines.push(`selfrag_${name} ${format(value)}`);
        else for (const [labels, v] of value) lines.push(`selfrag_${name}{${Object.entries(labels).map(([k, l]) => `${k}="${l}"`).join(",")}} ${format(v)}`);
    };
    metric("decode_calls_total", "counter", "llama_decode calls.", engine.decodeCalls);
    metric("tokens_evaluated_total", "counter", "Tokens through llama_decode (prompts, passages, generation).", engine.tokensEvaluated);
    metric("generated_tokens_total", "counter", "Tokens generated into segments.", engine.generatedTokens);
    metric("steps_total", "counter", "Step-loop iterations that decoded something.", engine.steps);
    metric("slot_steps_busy_total", "counter", "Sum over steps of the slots with a token in the step.", engine.busySlotSteps);
    metric("slot_steps_total", "counter", "Sum over steps of all slots.", engine.slotSteps);
    metric("slot_occupancy", "gauge", "Busy slot-steps / available slot-steps since start.", engine.occupancy);
    metric("slot_occupancy_last_minute", "gauge", "Busy slot-steps / available slot-steps over the last minute.", engine.occupancyLastMinute);
    metric("slots", "gauge", "Sequence slots of the context.", engine.sequences);
    metric("slots_active", "gauge", "Slots held by questions.", engine.activeSlots);
    metric("work_pending", "gauge", "Engine work items submitted and not finished.", engine.pendingWork);
    metric("generated_tokens_per_second", "gauge", "Generated tokens per second over the last minute.", engine.tokensPerSecondLastMinute);
    metric("requests_queued", "gauge", "Requests admitted and waiting for slots.", scheduler.queued);
    metric("requests_running", "gauge", "Requests holding slots.", scheduler.running);
    metric("requests_total", "counter", "Requests by outcome.", [
        [{outcome: "completed"}, scheduler.completed], [{outcome: "failed"}, scheduler.failed], [{outcome: "aborted"}, scheduler.aborted],
        [{outcome: "timeout"}, scheduler.timedOut], [{outcome: "rejected"}, scheduler.rejected]
    ]);
    metric("queue_wait_milliseconds_mean", "gauge", "Mean wait for slots of started requests.", scheduler.meanQueueWaitMs);
    metric("time_to_first_event_milliseconds_mean", "gauge", "Mean time from admission to the retrieval decision.", scheduler.meanTimeToFirstEventMs);
    return lines.join("\n") + "\n";
}

function format(value: number): string {
    return Number.isFinite(value) ? String(value) : "NaN";
}
