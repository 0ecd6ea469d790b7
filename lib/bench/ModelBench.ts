// `selfrag bench`: decoding speed on the user's own model and hardware, as llama-bench measures
// llama.cpp, with Self-RAG's workloads beside the engine's. Every rate's token count is read from
// the engine's own counters (tokensEvaluated, generatedTokens), not assumed from the request.
import type {FlashAttention, KvCacheType} from "../engine/types.js";
import {planLongForm, planShortForm} from "../selfrag/plan.js";
import os from "node:os";
import {SelfRagError} from "../errors.js";
import {SelfRagModel} from "../SelfRagModel.js";
import type {Passage} from "../selfrag/prompts.js";
import {naiveAnswer, type NaiveOptions} from "./NaivePeer.js";

export type BenchRowKind = "engine" | "selfrag" | "peer";

export interface ModelBenchOptions {
    modelPath: string;
    /** Concurrent sequences for the engine rows (1, 4). */
    sequences?: readonly number[];
    /** Prompt lengths of the pp rows (128, 512). */
    prompts?: readonly number[];
    /** Tokens per sequence of the tg rows (32). */
    generate?: number;
    /** CPU thread counts, one model load each (the model's default when not given). */
    threads?: readonly (number | undefined)[];
    gpu?: false | "auto" | "cuda" | "vulkan" | "metal";
    gpuLayers?: number;
    /** KV cache cell type and flash attention (SelfRagModel.load's). */
    kvCacheType?: KvCacheType;
    flashAttention?: FlashAttention;
    /** Repetitions per row after one warm-up (3). */
    repetitions?: number;
    /** Rows to run (all three kinds). */
    rows?: readonly BenchRowKind[];
    /** Self-RAG rows: passages per question (5), tokens per candidate (32), questions at once when saturated (as the slots allow). */
    ndocs?: number;
    maxNewTokens?: number;
    /** Long form: beam width (2) and depth (3). */
    beamWidth?: number;
    maxDepth?: number;
    onProgress?: (message: string) => void;
}

export interface BenchHeader {
    model: string;
    sizeBytes: number;
    /** Parameters, from the GGUF tensor shapes. */
    parameters: number;
    /** GGUF general.file_type, e.g. "MOSTLY_Q4_K_M" or "ALL_F32". */
    quantization: string;
    backend: string;
    /** The ggml CPU backend the run used (e.g. "zen4, compiled at install"; Linux), since it sets CPU speed. */
    cpuBackend?: string;
    /** The KV cache: its cell type and what llama.cpp allocated per sequence slot. */
    kvCache?: {type: string, bytesPerSlot: number, tokensPerSlot: number};
    cpu: string;
    cores: number;
    memoryBytes: number;
    node: string;
    date: string;
}

export interface BenchRow {
    kind: BenchRowKind;
    /** llama-bench style: pp128, tg32, fork128, short-form, short-form-saturated, long-form, ... */
    test: string;
    threads: number;
    sequences: number;
    /** Mean and standard deviation over the repetitions. */
    mean: number;
    std: number;
    unit: "t/s" | "q/s" | "ms";
    repetitions: number;
    /** Row-specific measurements (tokens counted, time to first event, evaluated-token ratio, ...). */
    extra?: Record<string, number | string>;
}

export interface BenchResult {
    header: BenchHeader;
    rows: BenchRow[];
}

const WORDS = ("the of and in to was is for on as with by that at from his he it an were are which this be or first also new had " +
    "city river war century king church school team season music film album station county village family member government").split(" ");

/** Deterministic filler passages (about 100 tokens each) and a question. */
function workload(ndocs: number): {question: string, passages: Passage[]} {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const words = (n: number) => Array.from({length: n}, () => WORDS[Math.floor(next() * WORDS.length)]).join(" ");
    return {
        question: "Which city did the team of the first season play in?",
        passages: Array.from({length: ndocs}, (_, i) => ({id: String(i + 1), title: words(2), text: words(70)}))
    };
}

function meanStd(values: readonly number[]): {mean: number, std: number} {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
    return {mean, std: Math.sqrt(variance)};
}

function positiveList(name: string, values: readonly number[]): number[] {
    if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1 || v > 4096)) {
        throw new SelfRagError(`${name} must be a list of integers from 1 to 4096, got ${values.join(",") || "nothing"}`, "INVALID_ARGUMENT");
    }
    return [...values];
}

/** GGUF facts for the header: parameter count and file type (metadata and tensor shapes only). */
async function modelFacts(file: string): Promise<{parameters: number, quantization: string}> {
    const {readGgufFileInfo, GgufFileType} = await import("node-llama-cpp") as unknown as {
        readGgufFileInfo: (p: string, o: {readTensorInfo: boolean}) => Promise<{
            tensorInfo?: {dimensions: readonly (number | bigint)[]}[], metadata: {general?: {file_type?: number}}
        }>,
        GgufFileType?: Record<number, string>
    };
    const info = await readGgufFileInfo(file, {readTensorInfo: true});
    const parameters = (info.tensorInfo ?? []).reduce((sum, t) => sum + t.dimensions.reduce<number>((p, d) => p * Number(d), 1), 0);
    const type = info.metadata.general?.file_type;
    return {parameters, quantization: type == null ? "unknown" : (GgufFileType?.[type] ?? `file_type ${type}`)};
}

/**
 * Runs the benchmark: per thread count, one model load, then the engine rows (pp, tg, fork at each
 * sequence count), the Self-RAG rows (short and long form, one question and saturated) and the
 * naive node-llama-cpp peer on the same model, each repeated after a warm-up.
 */
export async function runModelBench(options: ModelBenchOptions): Promise<BenchResult> {
    const sequences = positiveList("sequences", options.sequences ?? [1, 4]);
    const prompts = positiveList("prompt lengths", options.prompts ?? [128, 512]);
    const generate = positiveList("generated tokens", [options.generate ?? 32])[0];
    const repetitions = positiveList("repetitions", [options.repetitions ?? 3])[0];
    const ndocs = positiveList("ndocs", [options.ndocs ?? 5])[0];
    const maxNewTokens = positiveList("maxNewTokens", [options.maxNewTokens ?? 32])[0];
    const beamWidth = positiveList("beamWidth", [options.beamWidth ?? 2])[0];
    const maxDepth = positiveList("maxDepth", [options.maxDepth ?? 3])[0];
    const kinds = new Set(options.rows ?? ["engine", "selfrag", "peer"]);
    for (const k of kinds) if (!["engine", "selfrag", "peer"].includes(k)) throw new SelfRagError(`unknown row kind "${k}" (engine, selfrag, peer)`, "INVALID_ARGUMENT");
    const progress = options.onProgress ?? (() => undefined);
    const facts = await modelFacts(options.modelPath);
    const rows: BenchRow[] = [];
    let backend = "cpu";
    let cpuBackend: string | undefined;
    let kvCache: BenchHeader["kvCache"];
    const {question, passages} = workload(ndocs);
    const maxSequences = Math.max(...sequences, ndocs, beamWidth * ndocs);
    const contextSize = Math.max(...prompts) + generate + 64;

    for (const threads of options.threads ?? [undefined]) {
        progress(`loading ${options.modelPath}${threads != null ? ` with ${threads} threads` : ""}`);
        const model = await SelfRagModel.load({modelPath: options.modelPath, sequences: maxSequences, contextSize: Math.max(contextSize, 2048),
            threads, gpu: options.gpu ?? "auto", gpuLayers: options.gpuLayers,
            ...(options.kvCacheType != null ? {kvCacheType: options.kvCacheType} : {}), ...(options.flashAttention != null ? {flashAttention: options.flashAttention} : {})});
        try {
            backend = model.backend;
            const info = model.context.info;
            kvCache = {type: info.kvCacheType, bytesPerSlot: Math.round(info.kvCacheBytes / info.sequences), tokensPerSlot: info.contextPerSequence};
            if (model.cpuBackend != null) {
                cpuBackend = `${model.cpuBackend.variant}, ${model.cpuBackend.build === "compiled" ? "compiled at install" : "node-llama-cpp's prebuilt"}`;
            }
            const t = model.context.info.threads ?? threads ?? 0;
            // A run may return the milliseconds of its measured part (setup excluded); else it is timed whole.
            const timed = async (name: string, run: () => Promise<number | void>): Promise<number[]> => {
                const times: number[] = [];
                for (let r = 0; r <= repetitions; r++) {
                    progress(`${name}${t > 0 ? `, ${t} threads` : ""}: ${r === 0 ? "warm-up" : `repetition ${r}/${repetitions}`}`);
                    const started = performance.now();
                    const measured = await run();
                    if (r > 0) times.push(typeof measured === "number" ? measured : performance.now() - started);
                }
                return times;
            };
            if (kinds.has("engine")) rows.push(...await engineRows(model, {sequences, prompts, generate, threads: t, timed, repetitions}));
            if (kinds.has("selfrag")) {
                rows.push(...await selfRagRows(model, {question, passages, maxNewTokens, beamWidth, maxDepth, threads: t, timed, repetitions}));
            }
            if (kinds.has("peer")) rows.push(await peerRow(model, {question, passages, maxNewTokens, threads: t, timed, repetitions}));
        } finally {
            await model.dispose();
        }
    }
    return {
        header: {
            model: options.modelPath, sizeBytes: (await import("node:fs")).statSync(options.modelPath).size, parameters: facts.parameters,
            quantization: facts.quantization, backend, ...(cpuBackend != null ? {cpuBackend} : {}), ...(kvCache != null ? {kvCache} : {}), cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length,
            memoryBytes: os.totalmem(), node: process.version, date: new Date().toISOString()
        },
        rows
    };
}

type Timed = (name: string, run: () => Promise<number | void>) => Promise<number[]>;

/** Random ids from the ordinary vocabulary (no control or reflection tokens). */
function fillerTokens(model: SelfRagModel, count: number, salt: number): Int32Array {
    const vocabulary = model.tokenize("the of and in to was is for on as with by that at from city river war century king church school team");
    return Int32Array.from({length: count}, (_, i) => vocabulary[1 + ((i * 7 + salt) % (vocabulary.length - 1))]);
}

async function engineRows(model: SelfRagModel, o: {sequences: number[], prompts: number[], generate: number, threads: number, timed: Timed,
    repetitions: number}): Promise<BenchRow[]> {
    const ctx = model.context;
    const rows: BenchRow[] = [];
    for (const s of o.sequences) {
        const slots = ctx.acquire(s);
        try {
            for (const n of o.prompts) {
                // pp: n tokens into each of s sequences (chunked into steps by the engine), the last row's reflection log-probs extracted.
                let counted = 0;
                const times = await o.timed(`pp${n} x ${s}`, async () => {
                    await ctx.clear(...slots);
                    const before = ctx.stats.tokensEvaluated;
                    const started = performance.now();
                    await Promise.all(slots.map((seq, i) => ctx.prefill(seq, fillerTokens(model, n, i))));
                    const ms = performance.now() - started;
                    counted = ctx.stats.tokensEvaluated - before;
                    return ms;
                });
                rows.push(rate("engine", `pp${n}`, o.threads, s, counted, times, "t/s", {tokens: counted}));
            }
            // tg: greedy steps on s sequences at once, one token each per step.
            let generated = 0;
            const times = await o.timed(`tg${o.generate} x ${s}`, async () => {
                await ctx.clear(...slots);
                await Promise.all(slots.map((seq, i) => ctx.prefill(seq, fillerTokens(model, 16, i))));
                const before = ctx.stats.generatedTokens;
                const started = performance.now();
                // Through end-of-generation tokens, as llama-bench's tg: the row measures o.generate tokens per sequence, not
                // however many the model says before its EOS (4 on the fixture).
                await Promise.all(slots.map((seq) => ctx.generateOne(seq, o.generate, {ignoreEos: true})));
                const ms = performance.now() - started;
                generated = ctx.stats.generatedTokens - before;
                return ms;
            });
            rows.push(rate("engine", `tg${o.generate}`, o.threads, s, generated, times, "t/s", {tokens: generated}));
            if (s > 1) {
                // fork: a 128-token prefix shared into the other s - 1 sequences (KV cells shared, nothing decoded).
                const forkTimes = await o.timed(`fork x ${s}`, async () => {
                    await ctx.clear(...slots);
                    await ctx.prefill(slots[0], fillerTokens(model, 128, 0));
                    const started = performance.now();
                    await Promise.all(slots.slice(1).map((dst) => ctx.fork(slots[0], dst)));
                    return performance.now() - started;
                });
                const {mean, std} = meanStd(forkTimes);
                rows.push({kind: "engine", test: "fork128", threads: o.threads, sequences: s, mean, std, unit: "ms", repetitions: forkTimes.length});
            }
        } finally {
            await ctx.release(...slots);
        }
    }
    return rows;
}

/** A rate row: count / time per repetition (the count is the engine's, the same every repetition). */
function rate(kind: BenchRowKind, test: string, threads: number, sequences: number, count: number, timesMs: number[], unit: "t/s" | "q/s",
    extra?: Record<string, number | string>): BenchRow {
    const {mean, std} = meanStd(timesMs.map((ms) => count / (ms / 1000)));
    return {kind, test, threads, sequences, mean, std, unit, repetitions: timesMs.length, ...(extra != null ? {extra} : {})};
}

async function selfRagRows(model: SelfRagModel, o: {question: string, passages: Passage[], maxNewTokens: number, beamWidth: number,
    maxDepth: number, threads: number, timed: Timed, repetitions: number}): Promise<BenchRow[]> {
    const rows: BenchRow[] = [];
    const slots = model.context.sequences;
    // One plan per form for every timed answer: the rows time the flows, not option checking.
    const short = planShortForm({passages: o.passages, ndocs: o.passages.length, maxNewTokens: o.maxNewTokens, mode: "always"});
    const long = planLongForm({passages: o.passages, ndocs: o.passages.length, beamWidth: o.beamWidth, maxDepth: o.maxDepth, maxNewTokens: o.maxNewTokens,
        mode: "always"});
    // One question: time per answer and time to its first event (the retrieval decision).
    let firstEventMs = 0;
    let tokens = 0;
    let times = await o.timed("short form, one question", async () => {
        const started = performance.now();
        const answer = await model.answer(o.question, short, {onEvent: (e) => {
            if (e.type === "retrieval") firstEventMs = performance.now() - started;
        }});
        tokens = answer.stats.generatedTokens;
    });
    rows.push(rate("selfrag", "short-form", o.threads, o.passages.length, 1, times, "q/s",
        {ms_per_answer: meanStd(times).mean, first_event_ms: firstEventMs, generated_tokens: tokens, ndocs: o.passages.length}));
    // Saturated: as many questions at once as the slots hold.
    const batch = Math.max(1, Math.floor(slots / o.passages.length));
    times = await o.timed(`short form, ${batch} questions at once`, async () => {
        await model.answerBatch(Array.from({length: batch}, (_, i) => `${o.question} (${i})`), short);
    });
    rows.push(rate("selfrag", "short-form-saturated", o.threads, batch * o.passages.length, batch, times, "q/s", {questions: batch}));
    // Long form: one question, and the evaluated-token ratio of the shared-prefix schedule.
    let ratio = 0;
    times = await o.timed("long form, one question", async () => {
        const answer = await model.answerLong(o.question, long);
        ratio = answer.stats.evaluatedTokens / Math.max(1, answer.stats.referenceTokens);
    });
    rows.push(rate("selfrag", "long-form", o.threads, o.beamWidth * o.passages.length, 1, times, "q/s",
        {ms_per_answer: meanStd(times).mean, evaluated_over_reference_tokens: Number(ratio.toFixed(4)), beam: o.beamWidth, depth: o.maxDepth}));
    const longBatch = Math.max(1, Math.floor(slots / (o.beamWidth * o.passages.length)));
    if (longBatch > 1) {
        times = await o.timed(`long form, ${longBatch} questions at once`, async () => {
            await model.answerLongBatch(Array.from({length: longBatch}, (_, i) => `${o.question} (${i})`), long);
        });
        rows.push(rate("selfrag", "long-form-saturated", o.threads, longBatch * o.beamWidth * o.passages.length, longBatch, times, "q/s",
            {questions: longBatch}));
    }
    return rows;
}

/**
 * The naive way on the same model: node-llama-cpp alone, one passage after another, full
 * probability maps. Its answer is checked against ours before it is timed.
 */
async function peerRow(model: SelfRagModel, o: {question: string, passages: Passage[], maxNewTokens: number, threads: number, timed: Timed,
    repetitions: number}): Promise<BenchRow> {
    const {getLlama} = await import("node-llama-cpp");
    const llama = await getLlama({gpu: false, progressLogs: false, logLevel: "error" as never});
    const nlc = await llama.loadModel({modelPath: model.path, gpuLayers: 0});
    try {
        const context = await nlc.createContext({contextSize: 2048, sequences: 1, threads: o.threads > 0 ? o.threads : undefined});
        const sequence = context.getSequence();
        const scorer = model.scorer;
        const naive: NaiveOptions = {question: o.question, passages: o.passages, maxNewTokens: o.maxNewTokens, reflectionIds: model.reflection.ids, scorer};
        // Same answers before timing: the winning candidate and each candidate's first tokens.
        const ours = await model.answer(o.question, {passages: o.passages, ndocs: o.passages.length, maxNewTokens: o.maxNewTokens, mode: "always",
            traces: true});
        const theirs = await naiveAnswer(sequence, naive);
        const agree = ours.trace!.candidates.every((c, i) => {
            const half = Math.max(1, Math.floor(Math.min(c.tokens.length, theirs.candidates[i].tokens.length) / 2));
            return c.tokens.slice(0, half).every((t, k) => t === theirs.candidates[i].tokens[k]);
        }) && ours.best === theirs.best;
        const times = await o.timed("naive node-llama-cpp peer, one question", async () => {
            await naiveAnswer(sequence, naive);
        });
        return rate("peer", "short-form-naive", o.threads, 1, 1, times, "q/s",
            {ms_per_answer: meanStd(times).mean, same_answer: agree ? "yes" : "no (near-tie or numeric difference)"});
    } finally {
        await nlc.dispose();
    }
}
