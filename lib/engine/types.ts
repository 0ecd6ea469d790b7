// The whole native surface, typed in one place (mirrors native/*.cpp). The addon checks every
// argument it is given in one idiom (native/errors.h): a wrong kind, an out-of-range number or a
// short array is a SelfRagError INVALID_ARGUMENT naming the argument ("works[0].seq"), never a
// TypeError or a crash; slots, token ids and disposed handles have their own codes.

export interface NativeModelInfo {
    description: string;
    vocabSize: number;
    trainContextSize: number;
    embeddingSize: number;
    layerCount: number;
    parameterCount: number;
    sizeBytes: number;
    bos: number;
    eos: number;
    addBos: boolean;
}

export interface NativeModel {
    load(path: string, options: {gpuLayers: number, useMmap: boolean}): Promise<void>;
    tokenize(text: string, addBos: boolean, parseSpecial: boolean): Int32Array;
    detokenize(tokens: Int32Array, renderSpecial: boolean): string;
    tokenText(id: number): string;
    findTokens(texts: readonly string[]): Int32Array;
    info(): NativeModelInfo;
    dispose(): void;
}

export interface NativeContextOptions {
    contextSize: number;
    sequences: number;
    threads: number;
    threadsBatch: number;
    batchSize: number;
    /** Tokens per decode step: one per generating slot, the rest prefill chunks (default batchSize). */
    stepTokens?: number;
    /** Microseconds the loop waits, after finished work, for the work that follows from it (default 2000). */
    reactionWindowUs?: number;
    /** Round a step's token count leaving 2+ over a multiple of this up with throwaway tokens (0: never; see SelfRagModelOptions). */
    stepRowAlign?: number;
    unifiedKv: boolean;
    /**
     * KV cells in the cache (default contextSize x sequences). Fewer overcommit a unified cache:
     * forks share their prefix cells, so slots rarely fill together; when no cell is free, work
     * waits for one, and only work that can never get one fails (KV_FULL) or stops (kv_full).
     */
    kvCells?: number;
    reflectionIds: Int32Array;
    /** Cell type of the KV cache (default "f16"); a quantized one needs flash attention. */
    kvCacheType?: KvCacheType;
    /** llama.cpp's flash attention (default "auto"). */
    flashAttention?: FlashAttention;
    /**
     * Where logits rows are summarised: "host" (default) from llama.cpp's host copy after each
     * decode; "output" at the output tensor inside the graph (the CUDA kernel on a GPU). Needs unifiedKv.
     */
    extraction?: "host" | "output";
}

/** Fused summaries of logits rows (one row per output position). */
export interface NativeRows {
    argmax: Int32Array;
    argmaxLogprob: Float32Array;
    logSumExp: Float32Array;
    /** rows x reflection ids */
    reflection: Float32Array;
}

/** Rows of several items; item i owns rows [rowOffsets[i], rowOffsets[i + 1]). */
export interface NativeRowBlock extends NativeRows {
    rowOffsets: Int32Array;
}

export type NativeStopReason = "eos" | "stop" | "retrieve" | "length" | "context" | "kv_full";

export interface NativeSegment {
    seq: number;
    tokens: Int32Array;
    logprobs: Float32Array;
    reflection: Float32Array;
    stopReason: NativeStopReason;
}

export interface NativeGate {
    noRetrievalIndex: number;
    retrievalIndex: number;
    continueIndex: number;
    threshold: number;
}

/** Stop conditions of one generation: each carries its own, so any mix shares a step. */
export interface NativeStopOptions {
    stopTokens?: Int32Array;
    gate?: NativeGate;
    /** Generate through end-of-generation tokens (benchmarks: exactly maxTokens unless another condition stops it). */
    ignoreEos?: boolean;
}

export type NativeWork =
    | {kind: "prefill", seq: number, tokens: Int32Array, allPositions?: boolean, shareWith?: Int32Array}
    | ({kind: "generate", seq: number, maxTokens: number} & NativeStopOptions)
    | {kind: "fork", seq: number, dst: number}
    | {kind: "trim", seq: number, nPast: number}
    | {kind: "release", seq: number};

export interface NativeCompletion {
    id: number;
    kind: NativeWork["kind"];
    error?: Error;
    rows?: NativeRows;
    segment?: NativeSegment;
}

export interface NativeSequenceInfo {
    nPast: number;
    hasPending: boolean;
    pendingToken?: number;
    pendingLogprob?: number;
    pendingLogSumExp?: number;
    pendingReflection?: Float32Array;
}

export interface NativeContextInfo {
    contextSize: number;
    contextPerSequence: number;
    sequences: number;
    batchSize: number;
    stepTokens: number;
    stepRowAlign: number;
    vocabSize: number;
    unifiedKv: boolean;
    threads: number;
    kvCacheBytes: number;
    /** Cell type of the KV cache (K and V): "f16", "q8_0" or "q4_0". */
    kvCacheType: KvCacheType;
    /** Flash attention as asked ("auto": llama.cpp decides; a quantized cache turns it on). */
    flashAttention: FlashAttention;
    extraction: "host" | "output";
}

export const KV_CACHE_TYPES = ["f16", "q8_0", "q4_0"] as const;
export type KvCacheType = (typeof KV_CACHE_TYPES)[number];
export const FLASH_ATTENTION = ["auto", "on", "off"] as const;
export type FlashAttention = (typeof FLASH_ATTENTION)[number];

/** One consistent snapshot of the loop's counters (read under its lock: no half-counted step). */
export interface NativeContextStats {
    tokensEvaluated: number;
    decodeCalls: number;
    rowsExtracted: number;
    /** Rows the CUDA kernel summarised at the output tensor (extraction "output" on a GPU). */
    rowsOnDevice: number;
    /** The last CUDA failure at the output tensor (that decode used the host logits instead). */
    extractionError?: string;
    /** Loop iterations that decoded something. */
    steps: number;
    /** Sum over steps of the slots that had a token in the step. */
    busySlotSteps: number;
    /** Sum over steps of all slots. */
    slotSteps: number;
    generatedTokens: number;
    /** Milliseconds the loop waited for JavaScript's follow-up work after handing over finished work. */
    reactionWaitMs: number;
    /** Milliseconds inside llama_decode (the model's compute): over wall time, how busy the model was. */
    decodeMs: number;
    /** Throwaway tokens decoded to round steps up (stepRowAlign); not in tokensEvaluated. */
    paddingTokens: number;
    /** Work submitted and not finished. */
    pendingWork: number;
}

/** The step loop of one llama_context (native/context.cpp). */
export interface NativeContext {
    /** Appends work; returns its ids. Finished work comes back through the constructor's callback. */
    submit(works: readonly NativeWork[]): Float64Array;
    /** Work submitted so far on these slots ends with ABORTED at the next step. */
    cancel(seqs: Int32Array): void;
    sequenceInfo(seq: number): NativeSequenceInfo;
    info(): NativeContextInfo;
    stats(): NativeContextStats;
    /** Stops the loop; unfinished work completes with CONTEXT_DISPOSED (delivered before this returns). */
    dispose(): void;
}

export interface NativeExtractOutput {
    argmax: Int32Array;
    argmaxLogprob: Float32Array;
    logSumExp: Float32Array;
    reflection: Float32Array;
}

export interface NativeScoreWeights {
    relevance: number;
    support: number;
    utility: number;
    useSequenceScore: boolean;
    referenceLongFormUtility: boolean;
}

/** What cudaDevice() reports: kernels built into this addon, and a device to run them. */
export interface CudaDeviceInfo {
    /** This addon holds the CUDA kernels (the cuda variant, built where nvcc was present). */
    built: boolean;
    /** A CUDA device can run them. */
    available: boolean;
    deviceCount: number;
    /** Device 0's name and compute capability ("8.9"), when available. */
    name: string;
    computeCapability: string;
    /** Architectures compiled in ("75-real,80-real,86-real,89-real,90"). */
    archs: string;
    /** Why not available. */
    reason: string;
}

export type KernelIsa = "auto" | "scalar" | "avx2" | "avx512f" | "cuda";

export interface NativeAddon {
    Model: new () => NativeModel;
    Context: new (model: NativeModel, options: NativeContextOptions, onComplete: (done: NativeCompletion[]) => void) => NativeContext;
    setErrorClass(errorClass: new (message: string, code: string) => Error): void;
    /**
     * Checks every argument itself (a SelfRagError INVALID_ARGUMENT naming the argument, for a
     * wrong kind, a short array or an unknown isa); a row holding NaN, or only -Infinity, throws
     * NAN_LOGITS. Returns false only when this CPU cannot run the instruction set asked for.
     */
    extractReflectionLogprobs(logits: Float32Array, rows: number, vocab: number, ids: Int32Array,
        out: NativeExtractOutput, threads: number, isa: KernelIsa): boolean;
    retrievalRatio(logRetrieval: number, logContinue: number, logNoRetrieval: number): number;
    kernelIsa(): Exclude<KernelIsa, "auto" | "cuda">;
    /** `device` "cuda" runs the GPU kernel (CUDA_UNAVAILABLE where there is none). */
    scoreSegments(offsets: Int32Array, tokens: Int32Array, logprobs: Float32Array, reflection: Float32Array,
        reflectionIds: Int32Array, weights: NativeScoreWeights, device?: "cpu" | "cuda"): Float64Array;
    /** The CUDA kernels of this addon and the device they would run on. */
    cudaDevice(): CudaDeviceInfo;
    systemInfo(): string;
}
