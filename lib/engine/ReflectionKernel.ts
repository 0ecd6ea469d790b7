import {SelfRagError, invalidParameterError} from "../errors.js";
import {loadEngine} from "./addon.js";
import type {KernelIsa, NativeAddon} from "./types.js";

export interface ExtractedRows {
    /** Greedy token per row (first index of the maximum). */
    argmax: Int32Array;
    /** Log-probability of that token. */
    argmaxLogprob: Float32Array;
    logSumExp: Float32Array;
    /** rows x ids.length log-probs. */
    reflection: Float32Array;
}

/**
 * The fused kernel on its own: for `rows` rows of `vocab` logits, one vectorised pass per row
 * gives the argmax, its log-prob, the logsumexp and the log-probs of `ids`. Runs on the calling
 * thread (about 10 us per 32016-wide row); rows are split over `threads` when there are many.
 * Every instruction set gives the same answer on non-finite logits: a row holding NaN, or only
 * -Infinity, throws NAN_LOGITS (naming the row and index); k logits of +Infinity share the
 * probability (log-prob -log k each, every other token -Infinity, logSumExp +Infinity).
 * `isa: "cuda"` runs the GPU kernel over these rows (one upload; the cuda variant on a machine
 * with a device, else CUDA_UNAVAILABLE), with the same answers.
 *
 * ```ts
 * const out = await extractReflectionLogprobs(logits, 4, 32016, model.reflection.ids);
 * ```
 */
export async function extractReflectionLogprobs(logits: Float32Array, rows: number, vocab: number, ids: Int32Array,
    options: {threads?: number, isa?: KernelIsa} = {}): Promise<ExtractedRows> {
    const {addon} = await loadEngine();
    return extractWith(addon, logits, rows, vocab, ids, options);
}

/** Synchronous form for callers that already hold the addon (benchmarks, tests). */
export function extractWith(addon: NativeAddon, logits: Float32Array, rows: number, vocab: number, ids: Int32Array,
    options: {threads?: number, isa?: KernelIsa, out?: ExtractedRows} = {}): ExtractedRows {
    if (!(logits instanceof Float32Array)) throw invalidParameterError("logits", "a Float32Array", logits);
    if (!(ids instanceof Int32Array)) throw invalidParameterError("ids", "an Int32Array", ids);
    if (!Number.isInteger(rows) || rows < 0) throw invalidParameterError("rows", "a non-negative integer", rows);
    if (!Number.isInteger(vocab) || vocab < 1) throw invalidParameterError("vocab", "a positive integer", vocab);
    if (logits.length < rows * vocab) {
        throw new SelfRagError(`logits holds ${logits.length} values, fewer than rows x vocab = ${rows * vocab}`, "INVALID_ARGUMENT");
    }
    const out = options.out ?? {
        argmax: new Int32Array(rows),
        argmaxLogprob: new Float32Array(rows),
        logSumExp: new Float32Array(rows),
        reflection: new Float32Array(rows * ids.length)
    };
    const isa = options.isa ?? "auto";
    if (!addon.extractReflectionLogprobs(logits, rows, vocab, ids, out, options.threads ?? 1, isa)) {
        if (isa === "cuda") throw new SelfRagError(`the CUDA kernel cannot run: ${addon.cudaDevice().reason}`, "CUDA_UNAVAILABLE");
        throw new SelfRagError(`this CPU cannot run the ${isa} kernel`, "INVALID_ARGUMENT");
    }
    return out;
}
