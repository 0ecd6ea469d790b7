import fs from "node:fs";
import {DecodingContext} from "./engine/DecodingContext.js";
import {SelfRagError, invalidParameterError, refuseUnknownKeys, requireInteger, requireOneOf, requirePositiveInteger} from "./errors.js";
import {readGgufLayoutSync, Truncated, type GgufLayout} from "./gguf/GgufReader.js";
import {loadEngine, takeRecentLlamaLog, type EngineRuntime, type GpuOption} from "./engine/addon.js";
import {markPhase} from "./timings.js";
import {FLASH_ATTENTION, KV_CACHE_TYPES, type FlashAttention, type KvCacheType, type NativeModel, type NativeModelInfo} from "./engine/types.js";
import type {CpuBackendInfo} from "./engine/cpuBackend.js";
import {REFLECTION_TOKENS, R, ReflectionTokens, type ReflectionTokenText} from "./engine/ReflectionTokens.js";
import {retrievalProbability} from "./selfrag/scoring.js";
import {SegmentScorer} from "./selfrag/SegmentScorer.js";
import type {EngineModel} from "./engine/EngineModel.js";
import type {Llama} from "node-llama-cpp";
import type {RunControl} from "./selfrag/events.js";
import type {LongFormAnswer, LongFormOptions, LongFormQuestion} from "./selfrag/LongForm.js";
import type {ShortFormAnswer, ShortFormOptions, ShortFormQuestion} from "./selfrag/ShortForm.js";
import type {LongFormPlan, ShortFormPlan} from "./selfrag/plan.js";

interface Flows {
    shortForm: typeof import("./selfrag/ShortForm.js");
    longForm: typeof import("./selfrag/LongForm.js");
}

let flowsImport: Promise<Flows> | undefined;
let flows: Flows | undefined;

/**
 * The Self-RAG flows are imported while the first model loads (the native load runs on a worker
 * thread, so their parsing costs no wall time) rather than with this module: loading a model, or
 * `inspect`, does not wait for them. `load` resolves only once they are in, so every model can
 * call them synchronously, exactly as with static imports. A model sized to one prompt
 * (`sizeToPrompt`: inspect, which answers nothing) does not import them at all; its answer
 * methods import them on first use.
 */
function importFlows(): Promise<Flows> {
    flowsImport ??= Promise.all([import("./selfrag/ShortForm.js"), import("./selfrag/LongForm.js")])
        .then(([shortForm, longForm]) => flows = {shortForm, longForm});
    flowsImport.catch(() => {
        flowsImport = undefined;
    });
    return flowsImport;
}

export interface SelfRagModelOptions {
    /** Path to a GGUF file of a Self-RAG model. */
    modelPath: string;
    /** Tokens each sequence slot can hold (default 2048). */
    contextSize?: number;
    /** Sequence slots decoded together: one per passage, plus one for the question (default 6). */
    sequences?: number;
    /**
     * CPU threads for decoding. Default: node-llama-cpp's count of math cores for models of 1B
     * parameters or more, 1 below that (on small models extra threads spin more than they
     * compute: measured 7x slower with 2 threads on the tiny fixture).
     */
    threads?: number;
    /** Threads for prompt processing (default: `threads`). */
    threadsBatch?: number;
    /** Tokens per llama_decode call when prefilling (default 512). */
    batchSize?: number;
    /**
     * Tokens per decode step of the step loop (default: batchSize): one per generating slot, the
     * rest prefill chunks of waiting prompts and passages, so a long prompt delays the questions
     * already generating by at most one step of this size.
     */
    stepTokens?: number;
    /**
     * Microseconds the step loop waits, after handing finished work to JavaScript, for the work
     * that follows from it (a question's candidates, the next question on freed slots) so it joins
     * the next step (default 2000; 0: never wait).
     */
    reactionWindowUs?: number;
    /**
     * Rounds a decode step whose token count leaves 2 or 3 over a multiple of 4 up with throwaway
     * tokens (decoded after a generating slot's token, never seen by it, dropped after the step):
     * `"auto"` (default) does it for quantized weights on the CPU, where llama.cpp multiplies
     * tokens in tiles of 4 and passes over all the weights once more for each token left over,
     * so 3 candidates generating together step faster as 4; 0 never; 4 always. Answers are the same.
     */
    stepRowAlign?: "auto" | 0 | 4;
    /** "auto" (default) picks CUDA, Vulkan or Metal when node-llama-cpp finds one; false forces the CPU. */
    gpu?: GpuOption;
    /** Layers to offload when a GPU is used (default: all). */
    gpuLayers?: number;
    /**
     * One KV buffer shared by all slots (default true): forks only tag cells, so a prompt shared by
     * k passages is stored once. false gives each slot its own stream (forks copy it).
     */
    unifiedKv?: boolean;
    /**
     * KV cells of the unified cache (default: sequences x contextSize, room for every slot full).
     * Fewer overcommits memory: slots rarely fill at once, and when the cells run out work waits
     * for cells (a step that cannot decode anything fails its youngest item with KV_FULL).
     * Needs unifiedKv.
     */
    kvCells?: number;
    /**
     * Where logits rows are summarised. "output": at llama.cpp's output tensor, inside the graph;
     * on a GPU the CUDA kernel reduces the rows where they were computed and only the summaries
     * reach the CPU (the default on the cuda variant when its kernels were built and a device is
     * present). "host": from llama.cpp's host copy after each decode (the default everywhere else).
     * Both give the same answers. "output" needs unifiedKv.
     */
    extraction?: "host" | "output";
    /**
     * Cell type of the KV cache, K and V alike (default "f16"). "q8_0" takes about half the memory
     * of f16 and "q4_0" about a quarter (so twice or four times the slots in the same memory), at a
     * small cost in precision; both need flash attention, which "auto" turns on. A model whose
     * attention head size is not a multiple of 32 cannot use them (CONTEXT_CREATE_FAILED says so).
     */
    kvCacheType?: KvCacheType;
    /** llama.cpp's flash attention: "auto" (default: llama.cpp decides), "on" or "off" (refused with a quantized KV cache). */
    flashAttention?: FlashAttention;
    /** Memory-map the weights (default true). */
    useMmap?: boolean;
    /**
     * Size the context to this one prompt instead of `contextSize` tokens per slot: its tokens
     * (BOS added, special tokens parsed, as `inspect` tokenizes) rounded up to 256, llama.cpp's
     * KV padding, and at most `contextSize`, so a longer prompt overflows exactly as it would
     * have; `batchSize` is capped to that size too. For one-prompt work (`selfrag inspect`):
     * llama.cpp clears the whole KV cache when it creates a context, which for 4,096 cells is
     * most of a small model's start-up. Answers are the same (masked cells add nothing). Such a
     * model does not preload the Self-RAG flows unless `sizeReserve` says it will generate;
     * `answer()` and the others import them on first use.
     */
    sizeToPrompt?: string;
    /**
     * With `sizeToPrompt`: tokens kept free after the prompt (a generation budget), counted in the
     * size. `selfrag ask` sizes each slot to its prompt, its longest passage and `maxNewTokens`.
     */
    sizeReserve?: number;
    /**
     * Also bring up node-llama-cpp's `Llama` on the same llama.cpp, for `model.llama` (oracles,
     * embedders, grammars). Default true. false starts faster: the engine needs only llama.cpp, and
     * once this machine's CPU runtime has been checked by node-llama-cpp (the first load records
     * it, see engine/runtimeRecord.ts) a process skips node-llama-cpp's JavaScript, GPU probing and
     * binary test, about a second; `model.llama` then throws. The CLI loads this way.
     */
    nodeLlamaCpp?: boolean;
}

export interface InspectResult {
    /** Tokens in the prompt (BOS included). */
    promptTokens: number;
    /** Log-probability of each reflection token at the next position. */
    reflection: Record<ReflectionTokenText, number>;
    /** P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])). */
    p_retrieve: number;
    /** The greedy next token, its text and log-probability. */
    next: {id: number, text: string, logprob: number};
}

/**
 * A Self-RAG model (GGUF) with its reflection-token table and a batched decoding context.
 *
 * ```ts
 * const model = await SelfRagModel.load({modelPath: "selfrag_llama2_7b.Q4_K_M.gguf"});
 * const r = await model.inspect(formatPrompt("Who wrote Hamlet?"));
 * console.log(r.p_retrieve, r.reflection["[Retrieval]"]);
 * await model.dispose();
 * ```
 */
export class SelfRagModel implements EngineModel {
    public readonly path: string;
    public readonly reflection: ReflectionTokens;
    public readonly info: NativeModelInfo;
    /** The model's decoding context (`sequences` slots of `contextSize` tokens). */
    public readonly context: DecodingContext;
    /** The llama.cpp variant in use: "cpu", "cuda", "vulkan" or "metal". */
    public readonly backend: string;
    /**
     * The ggml CPU backend this process runs on (Linux; undefined elsewhere): `build: "compiled"`
     * when it is the one `npm install` compiled for this machine, "prebuilt" for node-llama-cpp's.
     */
    public readonly cpuBackend: CpuBackendInfo | undefined;
    /** Critique scoring on this model's addon (see SegmentScorer). */
    public readonly scorer: SegmentScorer;
    private native: NativeModel | undefined;
    private readonly loaded: EngineRuntime;

    private constructor(path: string, native: NativeModel, loaded: EngineRuntime, reflection: ReflectionTokens, context: DecodingContext) {
        this.path = path;
        this.native = native;
        this.loaded = loaded;
        this.reflection = reflection;
        this.info = native.info();
        this.context = context;
        this.backend = loaded.variant;
        this.cpuBackend = loaded.cpuBackend;
        this.scorer = new SegmentScorer(loaded.addon, reflection.ids);
    }

    public static async load(options: SelfRagModelOptions): Promise<SelfRagModel> {
        if (options == null || typeof options !== "object") throw invalidParameterError("options", "an object {modelPath, ...}", options);
        refuseUnknownKeys(options, LOAD_OPTIONS);
        if (typeof options.modelPath !== "string" || options.modelPath === "") {
            throw invalidParameterError("modelPath", "a path to a GGUF file", options?.modelPath);
        }
        if (options.kvCells != null && options.unifiedKv === false) {
            throw new SelfRagError("kvCells needs the unified KV cache (unifiedKv: true): it sizes that cache", "INVALID_ARGUMENT", {option: "kvCells"});
        }
        if (options.reactionWindowUs != null) requireInteger("reactionWindowUs", options.reactionWindowUs, 0, 10_000_000);
        if (options.gpuLayers != null) requireInteger("gpuLayers", options.gpuLayers, 0, 1 << 16);
        const stepRowAlign = options.stepRowAlign ?? "auto";
        if (stepRowAlign !== "auto" && stepRowAlign !== 0 && stepRowAlign !== 4) throw invalidParameterError("stepRowAlign", `"auto", 0 or 4`, stepRowAlign);
        const kvCacheType = requireOneOf("kvCacheType", options.kvCacheType ?? "f16", KV_CACHE_TYPES);
        const flashAttention = requireOneOf("flashAttention", options.flashAttention ?? "auto", FLASH_ATTENTION);
        if (kvCacheType !== "f16" && flashAttention === "off") {
            throw new SelfRagError(`kvCacheType "${kvCacheType}" needs flash attention (llama.cpp quantizes the V cache only with it): ` +
                `flashAttention "auto" or "on"`, "INVALID_ARGUMENT", {option: "flashAttention"});
        }
        for (const key of ["unifiedKv", "useMmap", "nodeLlamaCpp"] as const) {
            if (options[key] !== undefined && typeof options[key] !== "boolean") throw invalidParameterError(key, "true or false", options[key]);
        }
        const modelPath = options.modelPath;
        const contextSize = requirePositiveInteger("contextSize", options.contextSize ?? 2048, 1 << 20);
        const sequences = requirePositiveInteger("sequences", options.sequences ?? 6, 256);
        if (options.threads != null) requirePositiveInteger("threads", options.threads, 1024);
        if (options.threadsBatch != null) requirePositiveInteger("threadsBatch", options.threadsBatch, 1024);
        const batchSize = requirePositiveInteger("batchSize", options.batchSize ?? 512, 1 << 16);
        const stepTokens = requirePositiveInteger("stepTokens", options.stepTokens ?? batchSize, 1 << 16);
        if (options.sizeToPrompt != null && typeof options.sizeToPrompt !== "string") {
            throw invalidParameterError("sizeToPrompt", "a prompt string", options.sizeToPrompt);
        }
        const gpu = options.gpu ?? "auto";
        if (options.extraction != null && options.extraction !== "host" && options.extraction !== "output") {
            throw invalidParameterError("extraction", `"host" or "output"`, options.extraction);
        }
        if (!["auto", false, "cuda", "vulkan", "metal"].includes(gpu)) {
            throw invalidParameterError("gpu", `"auto", false, "cuda", "vulkan" or "metal"`, gpu);
        }
        const header = checkGgufFile(modelPath, REFLECTION_TOKENS.map((t) => t.text));
        const sizeReserve = options.sizeReserve == null ? 0 : requirePositiveInteger("sizeReserve", options.sizeReserve, 1 << 20);
        // A model sized to one prompt with nothing to generate (inspect) answers nothing: its flows load on first use.
        const flowsReady = options.sizeToPrompt == null || sizeReserve > 0 ? importFlows() : undefined;

        const loaded = await loadEngine({gpu, nodeLlamaCpp: options.nodeLlamaCpp ?? true});
        const gpuLayers = loaded.variant === "cpu" ? 0 : options.gpuLayers ?? 999;
        const native = new loaded.addon.Model();
        takeRecentLlamaLog();
        try {
            await native.load(modelPath, {gpuLayers, useMmap: options.useMmap ?? true});
        } catch (error) {
            // node-llama-cpp delivers llama.cpp's log lines through the event loop.
            await new Promise((resolve) => setTimeout(resolve, 20));
            const log = takeRecentLlamaLog();
            // A file without tensors cannot be a model: say so, unless llama.cpp stopped earlier for
            // a reason of its own (an architecture it does not know), which is then the news.
            if (header.tensorCount === 0 && !log.some((line) => line.includes("unknown model architecture"))) throw noTensors(modelPath);
            throw new SelfRagError(`could not load ${modelPath}: ${(error as Error).message}` +
                (log.length > 0 ? `\nllama.cpp said:\n  ${log.slice(-5).join("\n  ")}` : ""),
            (error as SelfRagError).code ?? "MODEL_LOAD_FAILED", {cause: error});
        }
        markPhase("model");
        const threads = options.threads ?? defaultThreads(native.info().parameterCount, loaded.mathCores);
        const threadsBatch = options.threadsBatch ?? threads;
        let reflection: ReflectionTokens;
        let context: DecodingContext;
        try {
            reflection = ReflectionTokens.resolve((texts) => idsFromHeader(header, texts, native) ?? native.findTokens(texts), modelPath);
            const sized = options.sizeToPrompt == null ? {contextSize, batchSize, stepTokens}
                : promptSized(native.tokenize(options.sizeToPrompt, true, true).length + sizeReserve, contextSize, batchSize, stepTokens, sequences);
            context = new DecodingContext((onComplete) => new loaded.addon.Context(native, {
                ...sized, sequences, threads, threadsBatch, reactionWindowUs: options.reactionWindowUs,
                stepRowAlign: stepRowAlign === "auto" ? (gpuLayers === 0 && header.repackedWeights ? 4 : 0) : stepRowAlign,
                unifiedKv: options.unifiedKv ?? true, reflectionIds: reflection.ids, kvCacheType, flashAttention,
                extraction: options.extraction ?? (loaded.variant === "cuda" && options.unifiedKv !== false && loaded.addon.cudaDevice().available ? "output" : "host"),
                ...(options.kvCells != null ? {kvCells: requirePositiveInteger("kvCells", options.kvCells, 1 << 30)} : {})
            }, onComplete), reflection.ids);
        } catch (error) {
            native.dispose();
            throw error;
        }
        markPhase("context");
        try {
            await flowsReady;
        } catch (error) {
            await context.dispose();
            native.dispose();
            throw error;
        }
        return new SelfRagModel(modelPath, native, loaded, reflection, context);
    }

    /** Tokenizes text; by default adds BOS and parses special tokens (reflection tokens become single ids). */
    public tokenize(text: string, options: {bos?: boolean, special?: boolean} = {}): Int32Array {
        return this.handle().tokenize(text, options.bos ?? true, options.special ?? true);
    }

    /** Turns ids back into text; reflection tokens are kept as their text unless `special` is false. */
    public detokenize(tokens: Int32Array | readonly number[], options: {special?: boolean} = {}): string {
        const array = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
        return this.handle().detokenize(array, options.special ?? true);
    }

    public tokenText(id: number): string {
        return this.handle().tokenText(id);
    }

    /** Resolves token texts to ids by exact vocabulary match (-1 when absent). */
    public findTokens(texts: readonly string[]): Int32Array {
        return this.handle().findTokens(texts);
    }

    /**
     * The reflection-token log-probs at the next position after `prompt` (BOS added, special tokens
     * parsed) and the retrieval probability Self-RAG thresholds.
     */
    public async inspect(prompt: string): Promise<InspectResult> {
        const tokens = this.tokenize(prompt);
        const [seq] = await this.context.lease(1);
        try {
            const block = await this.context.prefill(seq, tokens);
            const row = block.reflection.subarray(0, REFLECTION_TOKENS.length);
            return {
                promptTokens: tokens.length,
                reflection: Object.fromEntries(REFLECTION_TOKENS.map((t, i) => [t.text, row[i]])) as Record<ReflectionTokenText, number>,
                p_retrieve: retrievalProbability(row[R.retrieval], row[R.noRetrieval]),
                next: {id: block.argmax[0], text: this.tokenText(block.argmax[0]), logprob: block.argmaxLogprob[0]}
            };
        } finally {
            await this.context.release(seq);
        }
    }

    /**
     * Short-form Self-RAG: retrieve decision, one candidate per passage decoded together, critique
     * scores, best candidate (or closed-set vote).
     *
     * ```ts
     * const r = await model.answer("Who wrote Hamlet?", {passages});
     * r.answer; r.retrieve.p; r.candidates[r.best].relevance;
     * ```
     */
    public answer(question: string | ShortFormQuestion, options?: ShortFormOptions | ShortFormPlan, control?: RunControl): Promise<ShortFormAnswer> {
        if (flows == null) return importFlows().then(() => this.answer(question, options, control));
        return flows.shortForm.answer(this, question, options, control);
    }

    /** Many questions at once: they share decode steps as far as the slots allow ("submit all, collect all"). */
    public answerBatch(questions: readonly (string | ShortFormQuestion)[], options?: ShortFormOptions | ShortFormPlan, control?: RunControl): Promise<ShortFormAnswer[]> {
        if (flows == null) return importFlows().then(() => this.answerBatch(questions, options, control));
        return flows.shortForm.answerBatch(this, questions, options, control);
    }

    /**
     * Long-form Self-RAG: segment-level beam search with shared prefixes and [n] citations.
     *
     * ```ts
     * const r = await model.answerLong("Tell me a bio of Marie Curie.", {passages, beamWidth: 2});
     * ```
     */
    public answerLong(question: string | LongFormQuestion, options?: LongFormOptions | LongFormPlan, control?: RunControl): Promise<LongFormAnswer> {
        if (flows == null) return importFlows().then(() => this.answerLong(question, options, control));
        return flows.longForm.answerLong(this, question, options, control);
    }

    public answerLongBatch(questions: readonly (string | LongFormQuestion)[], options?: LongFormOptions | LongFormPlan, control?: RunControl): Promise<LongFormAnswer[]> {
        if (flows == null) return importFlows().then(() => this.answerLongBatch(questions, options, control));
        return flows.longForm.answerLongBatch(this, questions, options, control);
    }

    /** Frees the context and the weights; work in flight rejects with CONTEXT_DISPOSED. Idempotent. */
    public async dispose(): Promise<void> {
        if (this.native == null) return;
        markPhase("dispose");
        await this.context.dispose();
        this.native.dispose();
        this.native = undefined;
    }

    public get disposed(): boolean {
        return this.native == null;
    }

    /** The llama.cpp / node-llama-cpp instance shared with this model (for oracles and embedders). */
    public get llama(): Llama {
        if (this.loaded.llama == null) {
            throw new SelfRagError("this model was loaded with nodeLlamaCpp: false, so there is no node-llama-cpp Llama " +
                "(load with nodeLlamaCpp: true, or call loadAddon() for one)", "INVALID_STATE");
        }
        return this.loaded.llama;
    }

    private handle(): NativeModel {
        if (this.native == null) throw new SelfRagError("the model has been disposed", "MODEL_DISPOSED");
        return this.native;
    }
}

/** Every option of SelfRagModel.load (an unknown one is refused by name). */
const LOAD_OPTIONS: readonly (keyof SelfRagModelOptions)[] = ["modelPath", "contextSize", "sequences", "threads", "threadsBatch", "batchSize",
    "stepTokens", "reactionWindowUs", "stepRowAlign", "gpu", "gpuLayers", "unifiedKv", "kvCells", "extraction", "useMmap", "sizeToPrompt", "sizeReserve", "nodeLlamaCpp",
    "kvCacheType", "flashAttention"];

/** llama.cpp pads a context's KV cache to a multiple of this many cells (llama-context.cpp). */
const KV_PADDING = 256;

/** The sizes for a slot of `tokens` tokens: rounded up to the KV padding, never above what was asked. */
function promptSized(tokens: number, contextSize: number, batchSize: number, stepTokens: number, sequences: number) {
    const fitted = Math.min(contextSize, Math.max(KV_PADDING, Math.ceil(tokens / KV_PADDING) * KV_PADDING));
    // A batch spans the slots: at most the whole cache.
    const cells = fitted * sequences;
    return {contextSize: fitted, batchSize: Math.min(batchSize, cells), stepTokens: Math.min(stepTokens, cells)};
}

/** 1 thread for small models, the machine's math cores from 1B parameters up. */
export function defaultThreads(parameterCount: number, mathCores: number): number {
    return parameterCount >= 1e9 ? Math.max(1, mathCores) : 1;
}

/**
 * The ids of `texts` as the header's vocabulary has them, each confirmed by llama.cpp's own text
 * for that id, or undefined (one absent or not confirmed): then llama.cpp's vocabulary is searched.
 * llama.cpp loads `tokenizer.ggml.tokens` as its vocabulary, in order, so the first occurrence in
 * the header is the lowest id with that text, as the search would find; found during the header
 * check, it spares that search (32,000 ids x 15 texts, ~6 ms).
 */
function idsFromHeader(header: GgufHeader, texts: readonly string[], native: NativeModel): Int32Array | undefined {
    const ids = header.tokenIds;
    if (ids == null || ids.length !== texts.length || texts.some((t, i) => t !== header.tokenTexts[i] || ids[i] < 0)) return undefined;
    try {
        return texts.every((t, i) => native.tokenText(ids[i]) === t) ? Int32Array.from(ids) : undefined;
    } catch {
        return undefined; // an id llama.cpp cannot show: the vocabulary search (the caller's fallback) decides
    }
}

interface GgufHeader {
    tensorCount: number;
    /**
     * Every matrix of the layers is of a type llama.cpp's CPU backend repacks for its tiled
     * kernels (ggml-cpu/repack.cpp: Q4_0, Q8_0, Q2_K, Q4_K, Q5_K, Q6_K, IQ4_NL, MXFP4).
     */
    repackedWeights: boolean;
    /** The texts looked up in the vocabulary on the way, and their first ids there (-1: absent). */
    tokenTexts: readonly string[];
    tokenIds?: Int32Array;
}

/**
 * Fails early, with the file named, on what llama.cpp would only log: missing file, wrong magic,
 * bad or cut header, tensor data cut short. One synchronous read of the header (the metadata
 * values are skipped, not decoded); llama.cpp then maps the file itself. Returns the tensor count
 * and where `tokenTexts` are in the vocabulary.
 */
function checkGgufFile(modelPath: string, tokenTexts: readonly string[]): GgufHeader {
    let stat: fs.Stats;
    try {
        stat = fs.statSync(modelPath);
    } catch (error) {
        throw new SelfRagError(`model file not found: ${modelPath}`, "MODEL_NOT_FOUND", {cause: error});
    }
    if (!stat.isFile()) throw new SelfRagError(`model path is not a file: ${modelPath}`, "MODEL_NOT_FOUND");
    const fd = fs.openSync(modelPath, "r");
    let layout: GgufLayout;
    try {
        const head = Buffer.alloc(4);
        fs.readSync(fd, head, 0, 4, 0);
        if (head.toString("latin1") !== "GGUF") {
            throw new SelfRagError(`${modelPath} is not a GGUF file (it starts with ${JSON.stringify(head.toString("latin1"))}, ` +
                `not "GGUF"; ${stat.size} bytes)`, "INVALID_GGUF");
        }
        layout = readGgufLayoutSync(fd, stat.size, tokenTexts);
    } catch (error) {
        if (error instanceof SelfRagError) throw error;
        if (error instanceof Truncated) throw headerCut(modelPath, error.needed, stat.size);
        throw new SelfRagError(`${modelPath} has an unreadable GGUF header: ${(error as Error).message}`, "INVALID_GGUF",
            {cause: error});
    } finally {
        fs.closeSync(fd);
    }
    // The whole header was read, so a file with no tensors is complete: dataStart only adds the
    // alignment padding that tensor data would follow (llama.cpp's models/ggml-vocab-*.gguf).
    // llama.cpp refuses it (see noTensors).
    if (layout.tensors.length === 0) return {tensorCount: 0, repackedWeights: false, tokenTexts, tokenIds: layout.tokenIds};
    if (layout.dataStart > stat.size) throw headerCut(modelPath, layout.dataStart, stat.size);
    for (const tensor of layout.tensors) {
        const end = tensor.start + tensor.bytes;
        if (end > stat.size) {
            throw new SelfRagError(`${modelPath} is truncated: tensor ${tensor.name} ends at byte ${end} ` +
                `but the file has ${stat.size} bytes (was the download or copy cut short?)`, "INVALID_GGUF");
        }
    }
    return {tensorCount: layout.tensors.length, repackedWeights: repackedWeights(layout), tokenTexts, tokenIds: layout.tokenIds};
}

/** ggml types the CPU backend repacks into tiled layouts on x86 (AVX2+) and Arm (ggml_repack_get_optimal_repack_type). */
const REPACKED_TYPES = new Set([2 /* Q4_0 */, 8 /* Q8_0 */, 10 /* Q2_K */, 12 /* Q4_K */, 13 /* Q5_K */, 14 /* Q6_K */, 20 /* IQ4_NL */, 39 /* MXFP4 */]);

/** Whether every matrix of the model's layers (blk.N.*.weight but the f32 norms) is of a repacked type. */
function repackedWeights(layout: GgufLayout): boolean {
    const matrices = layout.tensors.filter((t) => t.name.startsWith("blk.") && t.name.endsWith(".weight") && t.ggmlType !== 0);
    return matrices.length > 0 && matrices.every((t) => REPACKED_TYPES.has(t.ggmlType));
}

function noTensors(modelPath: string): SelfRagError {
    return new SelfRagError(`${modelPath} is a valid GGUF file with no tensors (a vocabulary-only file?): its header is ` +
        "complete but it holds no weights, so it cannot be loaded as a model", "INVALID_GGUF");
}

function headerCut(modelPath: string, needed: number, size: number): SelfRagError {
    return new SelfRagError(`${modelPath} is truncated inside its GGUF header: the header needs ${needed} bytes ` +
        `but the file has ${size} (was the download or copy cut short?)`, "INVALID_GGUF");
}
