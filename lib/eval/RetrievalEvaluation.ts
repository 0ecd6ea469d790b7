// Retrieval-only evaluation (BEIR): search an index with each query and score the ranking against
// the qrels: recall@k, nDCG@10 and MRR, as BEIR reports them (pytrec_eval's definitions: linear
// gains, log2 discounts, the ideal ranking from the qrels; recall over the relevant documents).
import fs from "node:fs";
import {SelfRagError} from "../errors.js";
import {readJsonRecords} from "../jsonRecords.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";

export interface RetrievalQuery {
    id: string;
    text: string;
}

/** query id -> (document id -> graded relevance > 0). */
export type Qrels = Map<string, Map<string, number>>;

/** BEIR's queries.jsonl (`{"_id", "text"}`); `{"id", "question"}` records work too. */
export async function readQueries(file: string): Promise<RetrievalQuery[]> {
    if (!fs.existsSync(file)) throw new SelfRagError(`queries file not found: ${file}`, "CORPUS_NOT_FOUND");
    const queries: RetrievalQuery[] = [];
    for await (const entry of readJsonRecords(file)) {
        if (entry.kind === "malformed") throw new SelfRagError(entry.message, "INVALID_JSONL");
        const r = entry.value as Record<string, unknown> | null;
        const id = r?._id ?? r?.id;
        const text = r?.text ?? r?.question ?? r?.query;
        if ((typeof id !== "string" && typeof id !== "number") || typeof text !== "string" || text.trim() === "") {
            throw new SelfRagError(`${entry.where}: expected {"_id", "text"} (or {"id", "question"})`, "INVALID_JSONL");
        }
        queries.push({id: String(id), text});
    }
    if (queries.length === 0) throw new SelfRagError(`${file} holds no queries`, "EMPTY_CORPUS");
    return queries;
}

/** BEIR's qrels TSV: `query-id\tcorpus-id\tscore` (a header line is skipped); scores <= 0 are not relevant. */
export function readQrels(file: string): Qrels {
    if (!fs.existsSync(file)) throw new SelfRagError(`qrels file not found: ${file}`, "CORPUS_NOT_FOUND");
    const qrels: Qrels = new Map();
    fs.readFileSync(file, "utf8").split("\n").forEach((line, i) => {
        if (line.trim() === "") return;
        const fields = line.split("\t");
        if (i === 0 && /query/i.test(fields[0])) return;
        const score = Number(fields[2]);
        if (fields.length < 3 || !Number.isFinite(score)) {
            throw new SelfRagError(`${file}:${i + 1}: expected query-id<TAB>corpus-id<TAB>score`, "INVALID_ARGUMENT");
        }
        if (score <= 0) return;
        const [query, doc] = [fields[0].trim(), fields[1].trim()];
        if (!qrels.has(query)) qrels.set(query, new Map());
        qrels.get(query)!.set(doc, score);
    });
    if (qrels.size === 0) throw new SelfRagError(`${file} holds no relevance judgements`, "EMPTY_CORPUS");
    return qrels;
}

/** Fraction of the relevant documents in the first k. */
export function recallAt(ranked: readonly string[], relevant: ReadonlyMap<string, number>, k: number): number {
    if (relevant.size === 0) return 0;
    let hits = 0;
    for (const id of ranked.slice(0, k)) if (relevant.has(id)) hits++;
    return hits / relevant.size;
}

/** nDCG@k with linear gains (the graded relevance) and 1/log2(rank + 1) discounts. */
export function ndcgAt(ranked: readonly string[], relevant: ReadonlyMap<string, number>, k: number): number {
    let dcg = 0;
    ranked.slice(0, k).forEach((id, i) => {
        dcg += (relevant.get(id) ?? 0) / Math.log2(i + 2);
    });
    const ideal = [...relevant.values()].sort((a, b) => b - a).slice(0, k).reduce((sum, rel, i) => sum + rel / Math.log2(i + 2), 0);
    return ideal > 0 ? dcg / ideal : 0;
}

/** Reciprocal rank of the first relevant document in the ranking (0 if none). */
export function reciprocalRank(ranked: readonly string[], relevant: ReadonlyMap<string, number>): number {
    const at = ranked.findIndex((id) => relevant.has(id));
    return at < 0 ? 0 : 1 / (at + 1);
}

export interface RetrievalEvalRecord {
    id: string;
    query: string;
    retrieved: string[];
    recall: Record<string, number>;
    ndcg10: number;
    mrr: number;
}

export interface RetrievalEvalSummary {
    queries: number;
    /** Queries without judgements (not scored). */
    unjudged: number;
    recall: Record<string, number>;
    ndcg10: number;
    mrr: number;
    depth: number;
}

/**
 * Searches `index` with every judged query (top max(ks, 10), MRR over that depth) and scores it.
 * Passages are matched to the qrels by their corpus id.
 */
export async function evaluateRetrieval(index: PassageIndex, queries: readonly RetrievalQuery[], qrels: Qrels,
    options: {ks?: readonly number[], onRecord?: (r: RetrievalEvalRecord) => void, batch?: number} = {}): Promise<RetrievalEvalSummary> {
    const ks = [...(options.ks ?? [1, 5, 10, 100])].sort((a, b) => a - b);
    if (ks.some((k) => !Number.isInteger(k) || k < 1)) throw new SelfRagError(`k must be positive integers, got ${ks.join(",")}`, "INVALID_ARGUMENT");
    const depth = Math.max(10, ...ks);
    const judged = queries.filter((q) => qrels.has(q.id));
    const sums = {recall: Object.fromEntries(ks.map((k) => [String(k), 0])) as Record<string, number>, ndcg10: 0, mrr: 0};
    const batch = options.batch ?? 256;
    for (let start = 0; start < judged.length; start += batch) {
        const slice = judged.slice(start, start + batch);
        const hits = await index.search(slice.map((q) => q.text), depth);
        slice.forEach((q, i) => {
            const relevant = qrels.get(q.id)!;
            const ranked = hits[i].map((h) => h.id ?? "");
            const record: RetrievalEvalRecord = {
                id: q.id, query: q.text, retrieved: ranked,
                recall: Object.fromEntries(ks.map((k) => [String(k), recallAt(ranked, relevant, k)])),
                ndcg10: ndcgAt(ranked, relevant, 10), mrr: reciprocalRank(ranked, relevant)
            };
            for (const k of ks) sums.recall[String(k)] += record.recall[String(k)];
            sums.ndcg10 += record.ndcg10;
            sums.mrr += record.mrr;
            options.onRecord?.(record);
        });
    }
    const n = Math.max(judged.length, 1);
    return {
        queries: judged.length, unjudged: queries.length - judged.length, depth,
        recall: Object.fromEntries(ks.map((k) => [String(k), sums.recall[String(k)] / n])), ndcg10: sums.ndcg10 / n, mrr: sums.mrr / n
    };
}
