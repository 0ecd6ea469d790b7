// Short-form Self-RAG end to end, one question with 5 passages on the `bench` fixture model
// (random weights, ~53M parameters, f32), ours against a naive node-llama-cpp implementation, in
// one process and one run:
//   - ours: SelfRagModel.answer() (prompt prefilled once, forked into 5 slots, the 5 passages
//     appended in one batched decode, the 5 candidates generated with one llama_decode per step,
//     reflection log-probs extracted in C++, scored natively);
//   - naive: naiveShortForm.ts (one sequence, the candidates one after another, full probability
//     maps from evaluateWithMetadata, same scorer);
//   - where the naive time goes: the same naive loop asking for greedy tokens only (no probability
//     maps, so it cannot score: a lower bound of what a single-sequence design costs);
//   - where our time goes: answer()'s prefill and generation replayed on model.context, and a
//     5-row decode step against a 1-row step;
//   - ours with threads: 2 against threads: 1.
// A random model writes arbitrary text, so every candidate has a fixed budget (32 tokens, or up to
// EOS in both). Correctness is checked before timing: same greedy tokens, same first-position
// reflection log-probs. Timings only feed ratios and the report; nothing asserts a timing.
import os from "node:os";
import type {Llama, LlamaContextSequence, LlamaModel} from "node-llama-cpp";
import {Bench} from "tinybench";
import {loadAddon} from "../lib/engine/addon.js";
import {formatPassage, formatPrompt} from "../lib/selfrag/prompts.js";
import {REFLECTION_COUNT} from "../lib/engine/ReflectionTokens.js";
import type {ShortFormAnswer, ShortFormOptions} from "../lib/selfrag/ShortForm.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import type {TraceCandidate} from "../lib/selfrag/traces.js";
import {environment, measurement, medianOf, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {ensureBenchModel, MODEL_FILE} from "./benchModel.js";
import {naiveAnswer, naiveInput, type NaiveAnswer, type NaiveOptions} from "./naiveShortForm.js";
import {PASSAGES, QUESTION} from "./shortFormInputs.js";


const MAX_NEW_TOKENS = 32;
const CONTEXT_SIZE = 1024;
const EOS = 2;
const FIRST_ROW_TOLERANCE = 2e-3;
/** Each iteration takes a fraction of a second to seconds: a fixed handful of samples, no time budget. */
const TIMING = {iterations: 5, time: 0, warmupIterations: 1, warmupTime: 0};
/**
 * The threads-2 extra needs a CPU to spare: with as many threads as logical CPUs, any other busy
 * process stalls llama.cpp's spinning thread barrier (single runs of 3 to 27 s instead of 0.9 s
 * were seen on a busy 2-vCPU machine), which measures the neighbours, not the engine, and can
 * blow the bench's time budget. SELFRAG_BENCH_THREADS=1 measures it anyway.
 */
const MEASURE_THREADS = os.cpus().length >= 4 || process.env.SELFRAG_BENCH_THREADS === "1";

const OUR_OPTIONS: ShortFormOptions = {passages: PASSAGES, mode: "always", maxNewTokens: MAX_NEW_TOKENS};

/** Everything the comparison holds open; dispose() frees whatever was loaded. */
interface Setup {
    ours: SelfRagModel;
    nlcModel: LlamaModel;
    sequence: LlamaContextSequence;
    naive: NaiveOptions;
}

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    const {addon, llama} = await loadAddon({gpu: false});
    const threads = MEASURE_THREADS ? await timeThreads() : [];
    const setup = await load(llama);
    try {
        checkTokenization(setup);
        const check = await crossCheck(setup);
        const tokens = await countTokens(setup);
        const measurements = [...await time(setup), ...threads];
        const result: BenchResult = {
            name: "short-form",
            title: "Short-form Self-RAG, 5 passages: selfrag vs naive node-llama-cpp",
            environment: environment(addon.kernelIsa()),
            measurements,
            comparisons: compare(measurements, tokens),
            notes: notes(setup, check, tokens, measurements)
        };
        writeResult(result);
        return result;
    } finally {
        await dispose(setup);
    }
}

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/** Slots hold prompt + passage + budget; one slot per candidate. */
function loadOurs(threads: number): Promise<SelfRagModel> {
    return SelfRagModel.load({modelPath: MODEL_FILE, contextSize: CONTEXT_SIZE, sequences: PASSAGES.length, threads, gpu: false});
}

async function load(llama: Llama): Promise<Setup> {
    const loaded: Partial<Setup> = {};
    try {
        // One thread each side: the comparison is about the work done, not how it spreads over cores.
        loaded.ours = await loadOurs(1);
        loaded.nlcModel = await llama.loadModel({modelPath: MODEL_FILE, gpuLayers: 0});
        const context = await loaded.nlcModel.createContext({contextSize: CONTEXT_SIZE, sequences: 1, threads: 1});
        loaded.sequence = context.getSequence();
        loaded.naive = {
            question: QUESTION, passages: PASSAGES, maxNewTokens: MAX_NEW_TOKENS,
            reflectionIds: loaded.ours.reflection.ids, scorer: loaded.ours.scorer
        };
        return loaded as Setup;
    } catch (error) {
        await dispose(loaded);
        throw error;
    }
}

async function dispose(setup: Partial<Setup>): Promise<void> {
    await setup.ours?.dispose();
    await setup.nlcModel?.dispose(); // disposes its contexts too
}

// ---------------------------------------------------------------------------------------------
// Correctness before timing
// ---------------------------------------------------------------------------------------------

/** Both engines must feed the model the same ids, or the comparison would not be like for like. */
function checkTokenization(s: Setup): void {
    const prompt = s.ours.tokenize(formatPrompt(QUESTION));
    PASSAGES.forEach((passage, i) => {
        const ours = [...prompt, ...s.ours.tokenize(formatPassage(passage), {bos: false})];
        const theirs = naiveInput(s.nlcModel, QUESTION, passage);
        const first = ours.findIndex((id, k) => id !== theirs[k]);
        if (ours.length !== theirs.length || first >= 0) {
            throw new Error(`passage ${i}: the engines tokenize differently (${ours.length} vs ${theirs.length} tokens, ` +
                `first difference at ${first >= 0 ? first : Math.min(ours.length, theirs.length)})`);
        }
    });
}

interface CrossCheck {
    /** Per candidate: generated tokens (ours) and how many leading tokens both engines agree on. */
    generated: number[];
    matched: number[];
    stopReasons: string[];
    /** Largest |difference| of the reflection log-probs at the first generated position. */
    firstRowMaxDiff: number;
    bestOurs: number;
    bestNaive: number;
}

/**
 * Runs both once and compares the candidates. A token differing late in a candidate (an argmax
 * near-tie flipped by float summation order: batched vs single-row matmuls) is reported, not
 * fatal; a different first row or a divergence in the first half of the budget is a bug.
 */
async function crossCheck(s: Setup): Promise<CrossCheck> {
    const ours = await s.ours.answer(QUESTION, {...OUR_OPTIONS, traces: true});
    const naive = await naiveAnswer(s.sequence, s.naive);
    const candidates = traceOf(ours);
    if (candidates.length !== PASSAGES.length || naive.candidates.length !== PASSAGES.length) {
        throw new Error(`expected ${PASSAGES.length} candidates, got ${candidates.length} (ours) and ${naive.candidates.length} (naive)`);
    }
    const check: CrossCheck = {generated: [], matched: [], stopReasons: [], firstRowMaxDiff: 0, bestOurs: ours.best, bestNaive: naive.best};
    candidates.forEach((c, i) => {
        const theirs = naive.candidates[i];
        checkBudget(c.tokens, ours.candidates[i].stopReason, i);
        const matched = matchingPrefix(c.tokens, theirs.tokens);
        if (matched < MAX_NEW_TOKENS / 2 && !(matched === c.tokens.length && matched === theirs.tokens.length)) {
            throw new Error(`candidate ${i}: the engines diverge at generated token ${matched} ` +
                `(ours ${c.tokens[matched]}, naive ${theirs.tokens[matched]})`);
        }
        check.generated.push(c.tokens.length);
        check.matched.push(matched);
        check.stopReasons.push(ours.candidates[i].stopReason);
        check.firstRowMaxDiff = Math.max(check.firstRowMaxDiff, firstRowDiff(c.reflection[0], theirs.reflection, i));
    });
    return check;
}

function traceOf(answer: ShortFormAnswer): TraceCandidate[] {
    if (answer.trace == null) throw new Error("answer() returned no trace although traces: true was passed");
    return answer.trace.candidates;
}

/** Every candidate must use the whole budget, or stop at EOS (the naive loop stops there too). */
function checkBudget(tokens: readonly number[], stopReason: string, i: number): void {
    const atEos = stopReason === "eos" && tokens[tokens.length - 1] === EOS;
    if (tokens.length !== MAX_NEW_TOKENS && !atEos) {
        throw new Error(`candidate ${i} (ours) generated ${tokens.length} tokens and stopped with "${stopReason}"; ` +
            `expected ${MAX_NEW_TOKENS} or EOS`);
    }
}

function matchingPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
    const n = Math.min(a.length, b.length);
    for (let k = 0; k < n; k++) if (a[k] !== b[k]) return k;
    return n;
}

function firstRowDiff(ours: readonly number[], naiveRows: Float32Array, i: number): number {
    let worst = 0;
    for (let k = 0; k < REFLECTION_COUNT; k++) {
        const diff = Math.abs(ours[k] - naiveRows[k]);
        if (!(diff <= FIRST_ROW_TOLERANCE)) {
            throw new Error(`candidate ${i}: reflection log-prob ${k} at the first position is ${ours[k]} (ours) ` +
                `vs ${naiveRows[k]} (naive), |diff| ${diff} > ${FIRST_ROW_TOLERANCE}`);
        }
        worst = Math.max(worst, diff);
    }
    return worst;
}

// ---------------------------------------------------------------------------------------------
// Token counts
// ---------------------------------------------------------------------------------------------

interface TokenCounts {
    ours: number;
    naive: number;
    /** Generated tokens per question (all candidates). */
    generated: number;
    /** What ours prefills: the prompt once plus each passage. */
    promptTokens: number;
    passageTokens: number;
}

/** Tokens pushed through llama_decode for one question, read from each engine's own counters. */
async function countTokens(s: Setup): Promise<TokenCounts> {
    const before = s.ours.context.stats.tokensEvaluated;
    const answer = await s.ours.answer(QUESTION, OUR_OPTIONS);
    const ours = s.ours.context.stats.tokensEvaluated - before;

    const meter = s.sequence.tokenMeter.getState();
    const naive: NaiveAnswer = await naiveAnswer(s.sequence, s.naive);
    const used = s.sequence.tokenMeter.diff(meter);
    const metered = used.usedInputTokens + used.usedOutputTokens;
    const counted = naive.candidates.reduce((n, c) => n + c.evaluatedTokens, 0);
    if (metered !== counted) throw new Error(`node-llama-cpp's token meter says ${metered} tokens, the naive loop counted ${counted}`);
    return {
        ours, naive: metered, generated: answer.stats.generatedTokens,
        promptTokens: answer.stats.promptTokens, passageTokens: answer.stats.passageTokens
    };
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

interface TimedTask {
    id: string;
    name: string;
    fn: () => Promise<unknown>;
    hooks?: {beforeEach?: () => Promise<void>, afterEach?: () => Promise<void>};
}

/** Runs the tasks in one Bench; `async: true` because tinybench otherwise probes a task by calling it unawaited. */
async function runTasks(name: string, tasks: readonly TimedTask[]): Promise<Measurement[]> {
    const bench = new Bench({name, ...TIMING, throws: true});
    for (const t of tasks) bench.add(t.name, t.fn, {async: true, ...t.hooks});
    await bench.run();
    return tasks.map((t) => measurement(bench.getTask(t.name)!, t.id, t.id.startsWith("phase.") ? "phase" : "question"));
}

async function time(s: Setup): Promise<Measurement[]> {
    return runTasks("short-form question", [
        {id: "ours", name: "selfrag answer(), threads 1", fn: () => s.ours.answer(QUESTION, OUR_OPTIONS)},
        {id: "naive", name: "naive node-llama-cpp, probability maps, threads 1", fn: () => naiveAnswer(s.sequence, s.naive)},
        {id: "naive.greedy", name: "naive node-llama-cpp, greedy tokens only (cannot score), threads 1",
            fn: () => naiveGreedyOnly(s.sequence, s.nlcModel)},
        ...phaseTasks(s.ours)
    ]);
}

/**
 * The naive loop without what Self-RAG needs: greedy tokens only, no probability map. The gap to
 * the full naive loop is the price of reading log-probs through the public API; what remains is
 * the cost of decoding the candidates one by one and re-prefilling the prompt for each.
 */
async function naiveGreedyOnly(sequence: LlamaContextSequence, model: LlamaModel): Promise<number> {
    let generated = 0;
    for (const passage of PASSAGES) {
        await sequence.clearHistory();
        let count = 0;
        for await (const token of sequence.evaluate(naiveInput(model, QUESTION, passage), {temperature: 0, yieldEogToken: true})) {
            count++;
            if (count >= MAX_NEW_TOKENS || model.isEogToken(token)) break;
        }
        generated += count;
    }
    return generated;
}

/**
 * Where our time goes: answer()'s two costly steps replayed on model.context (prefill: prompt
 * once, fork, the 5 passages in one batch; generation: the 5 candidates together), and one
 * candidate generated alone, so a 5-row decode step can be set against a 1-row step.
 */
function phaseTasks(model: SelfRagModel): TimedTask[] {
    const ctx = model.context;
    const prompt = model.tokenize(formatPrompt(QUESTION));
    const passages = PASSAGES.map((p) => model.tokenize(formatPassage(p), {bos: false}));
    let slots: number[] = [];
    const prefill = async () => {
        slots = ctx.acquire(PASSAGES.length);
        await ctx.evaluate([{seq: slots[0], tokens: prompt}]);
        for (const seq of slots.slice(1)) await ctx.fork(slots[0], seq);
        await ctx.evaluate(slots.map((seq, j) => ({seq, tokens: passages[j]})));
    };
    const prefillOne = async () => {
        slots = ctx.acquire(1);
        await ctx.evaluate([{seq: slots[0], tokens: Int32Array.from([...prompt, ...passages[0]])}]);
    };
    const release = () => ctx.release(...slots);
    const generate = () => ctx.generate(slots.map((seq) => ({seq, maxTokens: MAX_NEW_TOKENS})));
    return [
        {id: "phase.prefill", name: "selfrag phase: prefill (prompt once, fork, 5 passages in one batch)", fn: prefill,
            hooks: {afterEach: release}},
        {id: "phase.generate5", name: `selfrag phase: generate 5 candidates x ${MAX_NEW_TOKENS} tokens together`, fn: generate,
            hooks: {beforeEach: prefill, afterEach: release}},
        {id: "phase.generate1", name: `selfrag phase: generate 1 candidate x ${MAX_NEW_TOKENS} tokens alone`, fn: generate,
            hooks: {beforeEach: prefillOne, afterEach: release}}
    ];
}

/** Optional extra (see MEASURE_THREADS): answer() with threads 2 against threads 1, on models of their own. */
async function timeThreads(): Promise<Measurement[]> {
    const one = await loadOurs(1);
    try {
        const two = await loadOurs(2);
        try {
            return await runTasks("short-form threads", [
                {id: "threads.1", name: "selfrag answer(), threads 1 (threads pair)", fn: () => one.answer(QUESTION, OUR_OPTIONS)},
                {id: "threads.2", name: "selfrag answer(), threads 2 (threads pair)", fn: () => two.answer(QUESTION, OUR_OPTIONS)}
            ]);
        } finally {
            await two.dispose();
        }
    } finally {
        await one.dispose();
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

function compare(m: readonly Measurement[], tokens: TokenCounts): Comparison[] {
    const ours = medianOf(m, "ours");
    const naive = medianOf(m, "naive");
    const steps = MAX_NEW_TOKENS - 1; // the first token comes from the prefill's last row
    const comparisons: Comparison[] = [
        {label: "naive / selfrag, per question", value: naive / ours, unit: "x", target: {kind: "min", value: 3}},
        {label: "naive greedy-only (no log-probs) / selfrag", value: medianOf(m, "naive.greedy") / ours, unit: "x"},
        {label: "naive / naive greedy-only (the price of the probability maps)", value: naive / medianOf(m, "naive.greedy"), unit: "x"},
        {label: "selfrag per candidate token (question / candidates x tokens)", value: ours / tokens.generated, unit: "us"},
        {label: "naive per candidate token (question / candidates x tokens)", value: naive / tokens.generated, unit: "us"},
        {label: `selfrag decode step, 5 rows (generate 5 / ${steps} steps)`, value: medianOf(m, "phase.generate5") / steps, unit: "us"},
        {label: `selfrag decode step, 1 row (generate 1 / ${steps} steps)`, value: medianOf(m, "phase.generate1") / steps, unit: "us"},
        {label: "5-row step / 1-row step", value: medianOf(m, "phase.generate5") / medianOf(m, "phase.generate1"), unit: "x"},
        {label: "tokens evaluated per question: naive / selfrag", value: tokens.naive / tokens.ours, unit: "x"}
    ];
    if (MEASURE_THREADS) {
        comparisons.push({label: "selfrag threads 1 / threads 2 (threads pair)", value: medianOf(m, "threads.1") / medianOf(m, "threads.2"),
            unit: "x"});
    }
    return comparisons;
}

function notes(s: Setup, check: CrossCheck, tokens: TokenCounts, m: readonly Measurement[]): string[] {
    const allMatched = check.matched.every((n, i) => n === check.generated[i]);
    const eos = check.stopReasons.filter((r) => r === "eos").length;
    const perMapUs = (medianOf(m, "naive") - medianOf(m, "naive.greedy")) / tokens.generated;
    return [
        `Model: the \`bench\` fixture (random weights, ${(s.ours.info.parameterCount / 1e6).toFixed(0)}M parameters, f32, ` +
        `Llama-2 tokenizer + Self-RAG tokens), CPU, contextSize ${CONTEXT_SIZE}; selfrag with ${PASSAGES.length} sequence slots ` +
        "(unified KV), node-llama-cpp with one sequence; both on one thread unless stated.",
        `One question ("${QUESTION}") with ${PASSAGES.length} passages of about 100 words, mode "always", ` +
        `greedy, ${MAX_NEW_TOKENS} new tokens per candidate (${eos} of ${PASSAGES.length} candidates stopped at EOS instead).`,
        `Tokens evaluated per question: selfrag ${tokens.ours} (prompt ${tokens.promptTokens} once + passages ` +
        `${tokens.passageTokens} + generated tokens fed back), naive ${tokens.naive} (prompt + passage per candidate + ` +
        `generated tokens fed back); ${tokens.generated} tokens generated by each.`,
        "Checked before timing: identical token ids fed to both engines; " +
        (allMatched
            ? `identical greedy tokens for all ${PASSAGES.length} candidates`
            : `greedy tokens agree on the first ${check.matched.join(", ")} of ${check.generated.join(", ")} tokens per candidate ` +
              "(a late argmax near-tie flipped by float summation order; both still generate the full budget, so the timings compare)") +
        `; reflection log-probs at the first position within ${check.firstRowMaxDiff.toExponential(1)} ` +
        `(tolerance ${FIRST_ROW_TOLERANCE}); best candidate ${check.bestOurs} (selfrag) vs ${check.bestNaive} (naive).`,
        "naive = node-llama-cpp's public API as documented: clearHistory(), then evaluateWithMetadata(prompt + passage, " +
        "{probabilities: true}, {temperature: 0}) per passage, log-probs read from the probability Map, the same native " +
        "scorer. \"greedy tokens only\" is the same loop with evaluate() and no metadata: it cannot score; the gap is the " +
        `cost of the probability maps, about ${(perMapUs / 1000).toFixed(1)} ms per generated token (a sorted, normalised ` +
        "32016-entry vocabulary crossing into JS as a Map).",
        "Phases replay answer()'s steps on model.context outside answer(); the decode-step rows divide a whole " +
        `generate() by its ${MAX_NEW_TOKENS - 1} llama_decode calls (the first token comes from the prefill's last row). ` +
        `Of selfrag's answer(), prefill is ${percent(medianOf(m, "phase.prefill"), medianOf(m, "ours"))} and generation ` +
        `${percent(medianOf(m, "phase.generate5"), medianOf(m, "ours"))} (timed apart, so the shares need not sum to 100%). ` +
        "A 5-row step costs a multiple of a 1-row step here (f32 weights, small-batch mat-muls), so decoding the " +
        "candidates together saves less than 5x on generation; the same step cost was seen with unifiedKv: false.",
        MEASURE_THREADS
            ? "Threads pair: answer() on two extra models loaded with threads 1 and 2, measured before the main comparison. " +
              "With threads 2 on a small machine, busy neighbours stall llama.cpp's spinning barrier: read the median, not the mean."
            : `Threads pair skipped: this machine has ${os.cpus().length} logical CPUs, and threads 2 with no CPU to spare ` +
              "measures the neighbours (busy neighbours stall llama.cpp's spinning barrier). SELFRAG_BENCH_THREADS=1 forces it.",
        `Samples: ${TIMING.iterations} iterations per task after ${TIMING.warmupIterations} warm-up; medians. ` +
        "Machines are shared and noisy, so compare ratios, not absolute times."
    ];
}

function percent(part: number, whole: number): string {
    return `${Math.round((100 * part) / whole)}%`;
}
