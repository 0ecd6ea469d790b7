import fs from "node:fs";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {evaluateRetrieval, readQrels, readQueries} from "../eval/RetrievalEvaluation.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag eval-retrieval --index DIR --queries FILE --qrels FILE [--k 1,5,10,100] [--output FILE.jsonl] [--json]

Retrieval-only evaluation, as BEIR reports it: searches the index with every judged query and
scores the ranking against the qrels: recall@k for each k, nDCG@10 and MRR (over the top max(k, 10)).
  --index DIR           an index built from the collection (e.g. BEIR's corpus.jsonl: index build --format beir)
  --queries FILE        BEIR's queries.jsonl ({"_id", "text"}; {"id", "question"} works too)
  --qrels FILE          BEIR's qrels TSV (query-id, corpus-id, score; header line skipped)
  --k LIST              the k of recall@k (1,5,10,100)
  --output FILE         one JSONL record per query: {"id", "query", "retrieved", "recall", "ndcg10", "mrr"}
  --json                print the summary as JSON`;

export async function evalRetrievalCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag eval-retrieval", help, {args, options: {
        index: {type: "string"}, queries: {type: "string"}, qrels: {type: "string"}, k: {type: "string"}, output: {type: "string"},
        json: {type: "boolean"}
    }});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.index == null) throw invalidParameterError("--index", "an index directory", values.index);
    if (values.queries == null) throw invalidParameterError("--queries", "a queries file (.jsonl)", values.queries);
    if (values.qrels == null) throw invalidParameterError("--qrels", "a qrels file (.tsv)", values.qrels);
    const ks = values.k?.split(",").map((k) => Number(k.trim()));
    if (ks != null && ks.some((k) => !Number.isInteger(k) || k < 1)) throw invalidParameterError("--k", "a comma-separated list of positive integers", values.k);
    const queries = await readQueries(values.queries);
    const qrels = readQrels(values.qrels);
    if (values.output != null && fs.existsSync(values.output) && fs.statSync(values.output).size > 0) {
        throw new SelfRagError(`${values.output} already exists; choose another --output`, "OUTPUT_EXISTS");
    }
    const out = values.output != null ? fs.openSync(values.output, "w") : undefined;
    const index = await PassageIndex.open(values.index);
    try {
        const summary = await evaluateRetrieval(index, queries, qrels, {ks,
            onRecord: (r) => out != null && fs.writeSync(out, JSON.stringify(r) + "\n")});
        if (values.json) {
            console.log(JSON.stringify(summary));
        } else {
            const recall = Object.entries(summary.recall).map(([k, v]) => `recall@${k} ${v.toFixed(4)}`).join(", ");
            console.log(`eval-retrieval: ${summary.queries} queries (${summary.unjudged} without judgements skipped): ${recall}, ` +
                `nDCG@10 ${summary.ndcg10.toFixed(4)}, MRR ${summary.mrr.toFixed(4)}`);
        }
    } finally {
        if (out != null) fs.closeSync(out);
        await index.close();
    }
}
