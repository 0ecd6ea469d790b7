import {invalidParameterError} from "../errors.js";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";
import {SegmentScorer} from "../selfrag/SegmentScorer.js";
import {readTraces, rerankTrace} from "../selfrag/traces.js";
import {weightFlagOptions, weightsFromFlags} from "../selfrag/plan.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag rerank --traces FILE [--w-rel X] [--w-sup X] [--w-use X] [--no-seqscore] [--json]

Re-scores saved traces (\`selfrag ask --save-traces\`) with other critique weights, without a model.
Prints one line per trace: its id, the best candidate and each candidate's score
("q1: best 1  [0] -2.310  [1] -0.874"); with --json one JSON line per trace instead:
{"id", "best", "candidates": [{"score", "relevance", "support", "utility", "seq"}]}.`;

export async function rerankCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag rerank", help, {args, options: {traces: {type: "string"}, json: {type: "boolean"}, ...weightFlagOptions()}});
    if (parsed == null) return;
    const values = parsed.values as {traces?: string, json?: boolean} & Record<string, unknown>;
    if (values.traces == null) throw invalidParameterError("--traces", "a traces JSONL file", values.traces);
    const weights = weightsFromFlags(values);
    const scorer = await SegmentScorer.create(Int32Array.from({length: REFLECTION_COUNT}, (_, i) => 32000 + i));
    for await (const {record} of readTraces(values.traces)) {
        const reranked = rerankTrace(record, scorer, weights);
        if (values.json) {
            console.log(JSON.stringify(reranked));
        } else {
            console.log(`${reranked.id}: best ${reranked.best}  ` +
                reranked.candidates.map((c, i) => `[${i}] ${c.score.toFixed(3)}`).join("  "));
        }
    }
}
