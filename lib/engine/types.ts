// The whole native surface, typed in one place (mirrors native/*.cpp).

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
    unifiedKv: boolean;
    reflectionIds: Int32Array;
}

/** Fused summaries of logits rows; item i owns rows [rowOffsets[i], rowOffsets[i + 1]). */
export interface NativeRowBlock {
    argmax: Int32Array;
    argmaxLogprob: Float32Array;
    logSumExp: Float32Array;
    /** rows x reflection ids */
    reflection: Float32Array;
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
    vocabSize: number;
    unifiedKv: boolean;
    threads: number;
    kvCacheBytes: number;
}

export interface NativeContextStats {
    tokensEvaluated: number;
    decodeCalls: number;
    rowsExtracted: number;
}

export interface NativeContext {
    evaluate(items: readonly {seq: number, tokens: Int32Array}[], allPositions: boolean): Promise<NativeRowBlock>;
    generate(items: readonly {seq: number, maxTokens: number}[],
        options: {stopTokens?: Int32Array, gate?: NativeGate}): Promise<NativeSegment[]>;
    fork(src: number, dst: number): void;
    trim(seq: number, nPast: number): void;
    release(seq: number): void;
    sequenceInfo(seq: number): NativeSequenceInfo;
    info(): NativeContextInfo;
    stats(): NativeContextStats;
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

export type KernelIsa = "auto" | "scalar" | "avx2" | "avx512f";

export interface NativeAddon {
    Model: new () => NativeModel;
    Context: new (model: NativeModel, options: NativeContextOptions) => NativeContext;
    setErrorClass(errorClass: new (message: string, code: string) => Error): void;
    extractReflectionLogprobs(logits: Float32Array, rows: number, vocab: number, ids: Int32Array,
        out: NativeExtractOutput, threads: number, isa: KernelIsa): boolean;
    retrievalRatio(logRetrieval: number, logContinue: number, logNoRetrieval: number): number;
    kernelIsa(): Exclude<KernelIsa, "auto">;
    scoreSegments(offsets: Int32Array, tokens: Int32Array, logprobs: Float32Array, reflection: Float32Array,
        reflectionIds: Int32Array, weights: NativeScoreWeights): Float64Array;
    groupedTopK(scores: Float64Array, groups: Int32Array, k: number): Int32Array;
    systemInfo(): string;
}
