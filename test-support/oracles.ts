// Independent implementations the engine is checked against.
import type {LlamaContextSequence, Token} from "node-llama-cpp";

/** Plain TypeScript log-softmax-and-gather over one row: the formula the fused kernel implements. */
export function referenceRow(row: Float32Array, ids: ArrayLike<number>) {
    let max = -Infinity;
    let argmax = 0;
    for (let i = 0; i < row.length; i++) {
        if (row[i] > max) {
            max = row[i];
            argmax = i;
        }
    }
    let sum = 0;
    for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
    const logSumExp = max + Math.log(sum);
    return {argmax, logSumExp, argmaxLogprob: max - logSumExp, logprobs: Array.from(ids, (id) => row[id] - logSumExp)};
}

/**
 * node-llama-cpp's own answer for the next-token log-probs of `ids` after `tokens`: its
 * filtered-logits path plus the total logit weight (sum of exp(logit - max)).
 */
export async function nodeLlamaCppLogprobs(sequence: LlamaContextSequence, tokens: ArrayLike<number>, ids: ArrayLike<number>) {
    await sequence.clearHistory();
    const list = Array.from(tokens) as Token[];
    const last = list.pop()!;
    const filter = Array.from(ids) as Token[];
    if (list.length > 0) await sequence.evaluateWithoutGeneratingNewTokens(list);
    const [out] = await sequence.controlledEvaluate([[last, {generateNext: {logits: {filter: {tokens: filter, includeMax: true}}, totalLogitWeight: true}}]]);
    const logits = out!.next.logits!;
    const max = Math.max(...logits.values());
    const logSumExp = max + Math.log(out!.next.totalLogitWeight!);
    return filter.map((id) => logits.get(id)! - logSumExp);
}
