/** Numerically stable Self-RAG probability ratios from log-probs (docs/self-rag.md, "What is read from the model"). */

/** log(exp(a) + exp(b)) without overflow or underflow to -Infinity for finite inputs. */
export function logAddExp(a: number, b: number): number {
    if (a === -Infinity) return b;
    if (b === -Infinity) return a;
    const m = Math.max(a, b);
    return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])), from log-probs. */
export function retrievalProbability(logRetrieval: number, logNoRetrieval: number): number {
    // p / (p + q) = 1 / (1 + exp(log q - log p))
    return 1 / (1 + Math.exp(logNoRetrieval - logRetrieval));
}
