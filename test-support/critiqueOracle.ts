// A plain TypeScript implementation of Self-RAG's critique formulas (docs/self-rag.md, "What is read from the model"),
// written straight from the spec with probabilities in doubles: the oracle for the native scorer.
const UTILITY_WEIGHTS = [-1, -0.5, 0, 0.5, 1];

export interface OracleCandidate {
    tokens: number[];
    logprobs: number[];
    reflection: number[][];
}

export function oracleScore(c: OracleCandidate, ids: number[], w = {rel: 1, sup: 1, use: 0.5, seq: true}) {
    const p = (row: number[], index: number) => Math.exp(row[index]);
    const seq = c.logprobs.reduce((a, b) => a + b, 0) / Math.max(c.tokens.length, 1);
    const relevance = c.tokens.length === 0 ? 0 : p(c.reflection[0], 4) / (p(c.reflection[0], 4) + p(c.reflection[0], 3));
    const supIds = [ids[12], ids[13], ids[14]];
    const useIds = [ids[7], ids[8], ids[9], ids[10], ids[11]];
    const supAt = c.tokens.findIndex((t) => supIds.includes(t));
    const useAt = c.tokens.findIndex((t) => useIds.includes(t));
    let support = 0;
    if (supAt >= 0) {
        const r = c.reflection[supAt];
        support = (p(r, 12) + 0.5 * p(r, 13)) / (p(r, 12) + p(r, 13) + p(r, 14));
    }
    let utility = 0;
    if (useAt >= 0) {
        const r = c.reflection[useAt];
        const total = [7, 8, 9, 10, 11].reduce((a, i) => a + p(r, i), 0);
        utility = [7, 8, 9, 10, 11].reduce((a, i, k) => a + UTILITY_WEIGHTS[k] * p(r, i) / total, 0);
    }
    const score = (w.seq ? Math.exp(seq) : 0) + w.rel * relevance + w.sup * support + w.use * utility;
    return {score, relevance, support, utility, seq};
}
