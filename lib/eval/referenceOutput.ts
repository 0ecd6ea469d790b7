// The output files of the released Self-RAG scripts, built from `selfrag eval` records (kept with
// `referenceFields`), so the tools downstream of them read ours unchanged:
//   - run_short_form.py: one JSON object {preds, prompts, metric_results, all_results, golds,
//     metric, metric_mean, scores};
//   - run_long_form_static.py, ASQA / ELI5: ALCE's {data: [record + output + docs + intermediate],
//     args, total_cost, azure_filter_fail}, which ALCE's eval.py reads;
//   - run_long_form_static.py, FactScore: JSONL {input, output, topic, cat, intermediate}, which
//     FactScore reads.
import {SelfRagError} from "../errors.js";
import type {Passage, Task} from "../selfrag/prompts.js";
import type {EvalRecord} from "./Evaluation.js";
import type {MetricName} from "./metrics.js";

/** `selfrag eval --output-format`: our JSONL only, or also the reference scripts' output file. */
export const OUTPUT_FORMATS = ["jsonl", "reference"] as const;

export interface ReferenceOutputOptions {
    long: boolean;
    task: Task;
    metric: MetricName;
}

/** The file name the reference output goes to, next to the JSONL output. */
export function referenceOutputPath(output: string, options: {long: boolean, task: Task}): string {
    const base = output.replace(/\.jsonl$/i, "");
    return options.long && options.task !== "asqa" && options.task !== "eli5" ? `${base}.reference.jsonl` : `${base}.reference.json`;
}

/**
 * The reference output file's text for these records (records with an error are left out: the
 * script has no way to write them). Every record must carry its `reference` fields.
 */
export function formatReferenceOutput(records: readonly EvalRecord[], options: ReferenceOutputOptions): string {
    const ok = records.filter((r) => r.error == null);
    for (const r of ok) {
        if (r.reference == null) {
            throw new SelfRagError(`record ${r.id} has no reference fields: it was written without --output-format reference; run it again`,
                "INVALID_ARGUMENT");
        }
    }
    if (!options.long) {
        const metricResults = ok.map((r) => r.score ?? null);
        const scored = metricResults.filter((s): s is number => s != null);
        return JSON.stringify({
            preds: ok.map((r) => stripLead(r.prediction)),
            prompts: ok.map((r) => r.reference!.prompt ?? ""),
            metric_results: metricResults,
            all_results: ok.map((r) => r.reference!.results ?? {}),
            golds: [], // the script never fills it
            metric: options.metric,
            metric_mean: scored.length > 0 ? scored.reduce((a, b) => a + b, 0) / scored.length : null,
            scores: []
        });
    }
    if (options.task === "asqa" || options.task === "eli5") {
        return JSON.stringify({
            data: ok.map((r) => ({
                ...r.reference!.record, output: r.prediction, docs: originalDocs(r),
                ...(r.reference!.intermediate != null ? {intermediate: r.reference!.intermediate} : {})
            })),
            args: [], total_cost: 0.0, azure_filter_fail: ""
        });
    }
    return ok.map((r) => {
        const rec = r.reference!.record;
        return JSON.stringify({input: rec.input ?? r.question, output: r.prediction, topic: rec.topic ?? null, cat: rec.cat ?? null,
            intermediate: r.reference!.intermediate ?? []});
    }).join("\n") + (ok.length > 0 ? "\n" : "");
}

/** The script's prediction as stored in "preds": a leading "#" or ":" dropped. */
function stripLead(prediction: string): string {
    return prediction.startsWith("#") || prediction.startsWith(":") ? prediction.slice(1) : prediction;
}

/** The cited passages as the input record holds them (every field kept), matched by title and text. */
function originalDocs(r: EvalRecord): unknown[] {
    const rec = r.reference!.record;
    const list = ["docs", "ctxs", "top_contexts"].map((f) => rec[f]).find(Array.isArray) as Record<string, unknown>[] | undefined;
    return (r.docs ?? []).map((d: Passage) => list?.find((o) => o != null && o.text === d.text && (o.title ?? "") === d.title) ?? d);
}
