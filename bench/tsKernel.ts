// Baseline A: the reflection extraction as a Node developer would write it in plain TypeScript,
// without the addon. Same outputs as the fused kernel, so the two can be checked against each
// other and timed on the same rows. Deliberately straightforward (no manual unrolling): it stands
// for "what you would do without selfrag".
import type {ExtractedRows} from "../lib/engine/ReflectionKernel.js";

export function extractInTypeScript(logits: Float32Array, rows: number, vocab: number, ids: Int32Array): ExtractedRows {
    const out: ExtractedRows = {
        argmax: new Int32Array(rows),
        argmaxLogprob: new Float32Array(rows),
        logSumExp: new Float32Array(rows),
        reflection: new Float32Array(rows * ids.length)
    };
    for (let r = 0; r < rows; r++) {
        const base = r * vocab;
        let max = -Infinity;
        let argmax = 0;
        for (let i = 0; i < vocab; i++) {
            const x = logits[base + i];
            if (x > max) {
                max = x;
                argmax = i;
            }
        }
        let sum = 0;
        for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i] - max);
        const lse = max + Math.log(sum);
        out.argmax[r] = argmax;
        out.argmaxLogprob[r] = max - lse;
        out.logSumExp[r] = lse;
        for (let k = 0; k < ids.length; k++) out.reflection[r * ids.length + k] = logits[base + ids[k]] - lse;
    }
    return out;
}
