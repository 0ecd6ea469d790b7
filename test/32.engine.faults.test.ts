// The engine at its edges: counters read while the loop writes them, work submitted from
// JavaScript while the loop runs, a KV cache with no free cell (the halving retry, KV_FULL and the
// kv_full stop), the event loop staying free during a long generation, models whose logits are
// NaN or +Infinity, and model files that are not what they claim (vocabulary-only, bit-flipped).
// "While" is shown with the engine's counters, never with wall-clock time.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {DecodingContext} from "../lib/engine/DecodingContext.js";
import {loadAddon} from "../lib/engine/addon.js";
import {R, REFLECTION_TOKENS} from "../lib/engine/ReflectionTokens.js";
import type {NativeContextStats, NativeModel, NativeSegment} from "../lib/engine/types.js";
import {formatPrompt} from "../lib/selfrag/prompts.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rejectsWith} from "../test-support/assertions.js";
import {poisonedModel, randomModel, tempDir, tinyModel, vocabularyOnlyGguf} from "../test-support/fixtures.js";
import {mulberry32} from "../test-support/random.js";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

/** Polls (yielding to the event loop) until `condition` holds; the deadline only turns a hang into a clear failure. */
async function waitFor(what: string, condition: () => boolean): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!condition()) {
        if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 0));
    }
}

/** Invariants every snapshot of the counters satisfies, and none goes backwards. */
function checkSnapshot(s: NativeContextStats, previous: NativeContextStats | undefined, sequences: number): string | undefined {
    if (s.slotSteps !== s.steps * sequences) return `slotSteps ${s.slotSteps} != steps ${s.steps} x ${sequences}`;
    if (s.busySlotSteps > s.slotSteps) return `busySlotSteps ${s.busySlotSteps} > slotSteps ${s.slotSteps}`;
    if (s.tokensEvaluated < s.decodeCalls) return `tokensEvaluated ${s.tokensEvaluated} < decodeCalls ${s.decodeCalls}`;
    if (s.rowsExtracted > s.tokensEvaluated) return `rowsExtracted ${s.rowsExtracted} > tokensEvaluated ${s.tokensEvaluated}`;
    if (s.decodeCalls < s.steps) return `decodeCalls ${s.decodeCalls} < steps ${s.steps}`;
    if (previous != null) {
        for (const key of ["tokensEvaluated", "decodeCalls", "rowsExtracted", "steps", "busySlotSteps", "slotSteps", "generatedTokens"] as const) {
            if (s[key] < previous[key]) return `${key} went back from ${previous[key]} to ${s[key]}`;
        }
    }
    return undefined;
}

describe("engine faults and edges", function () {
    describe("the step loop and JavaScript at the same time", () => {
        let model: SelfRagModel;
        before(async () => {
            model = await SelfRagModel.load({modelPath: await randomModel(), sequences: 8, contextSize: 512, gpu: false});
        });
        after(async () => model?.dispose());
        afterEach(async () => {
            assert.equal(model.context.slots.inUse, 0);
            await waitFor("the loop to drain", () => model.context.stats.pendingWork === 0);
        });

        it("stats() is one consistent snapshot while the loop thread writes the counters", async () => {
            const ctx = model.context;
            const slots = await ctx.lease(4);
            const prompt = model.tokenize(formatPrompt("Write a long story about a lighthouse keeper."));
            await Promise.all(slots.map((seq) => ctx.prefill(seq, prompt)));
            const start = ctx.stats.steps;
            const generations = ctx.generate(slots.map((seq) => ({seq, maxTokens: 400})));
            // Submissions leave for the loop at the end of this turn of the event loop.
            await waitFor("the generations to start", () => ctx.stats.steps > start);
            // Read in a tight loop on the JS thread while the loop thread decodes (the generations
            // need no JavaScript until they finish, so the loop runs step after step meanwhile).
            let previous: NativeContextStats | undefined;
            let reads = 0;
            const seenSteps = new Set<number>();
            while (reads < 5_000_000) {
                const s = ctx.stats;
                reads++;
                const broken = checkSnapshot(s, previous, 8);
                if (broken != null) assert.fail(`snapshot ${reads} (step ${s.steps}): ${broken}`);
                previous = s;
                seenSteps.add(s.steps);
                if (s.steps >= start + 300) break;
            }
            const segments = await generations;
            assert.ok(seenSteps.size >= 100, `the reads saw ${seenSteps.size} different steps (${reads} reads)`);
            assert.ok(segments.every((s) => s.tokens.length > 0));
            await ctx.release(...slots);
        });

        it("work submitted from JavaScript at any moment while the loop runs gives exactly what it gives alone", async () => {
            const ctx = model.context;
            const rng = mulberry32(26);
            const prompts = ["Tell me about Paris.", "Name three rivers.", "What is a prime number?", "Describe a lighthouse."]
                .map((q) => model.tokenize(formatPrompt(q)));
            const extra = model.tokenize(" And then, in more detail:", {bos: false});
            // One script per slot: prefill, fork into a scratch slot, generate on both, trim, prefill, generate.
            const script = async (seq: number, scratch: number, p: Int32Array, budget: number) => {
                await ctx.prefill(seq, p);
                void ctx.fork(seq, scratch);
                const [a, b] = await Promise.all([ctx.generateOne(seq, budget), ctx.generateOne(scratch, budget + 3)]);
                void ctx.trim(seq, p.length);
                await ctx.prefill(seq, extra);
                const c = await ctx.generateOne(seq, budget);
                await ctx.clear(seq, scratch);
                return [a, b, c].map((s) => Array.from(s.tokens));
            };
            // The oracle: each script alone on the idle context.
            const budgets = [5, 9, 14];
            const alone: number[][][] = [];
            for (const [i, budget] of budgets.entries()) {
                const [x, y] = await ctx.lease(2);
                alone.push(await script(x, y, prompts[i + 1], budget));
                await ctx.release(x, y);
            }
            const [longSeq] = await ctx.lease(1);
            await ctx.prefill(longSeq, prompts[0]);
            const longAlone = Array.from((await ctx.generateOne(longSeq, 300)).tokens);
            await ctx.release(longSeq);

            // Now: one long generation, and the scripts started at random steps while it runs,
            // each on its own pair of slots (they overlap each other too).
            const [seq0, ...others] = await ctx.lease(7);
            await ctx.prefill(seq0, prompts[0]);
            const startStep = ctx.stats.steps;
            let longDone = false;
            const long = ctx.generateOne(seq0, 300).finally(() => {
                longDone = true;
            });
            const results: Promise<number[][]>[] = [];
            const startedWhileLongRan: boolean[] = [];
            let target = startStep;
            for (const [i, budget] of budgets.entries()) {
                target += 5 + Math.floor(rng() * 40);
                await waitFor(`step ${target}`, () => ctx.stats.steps >= target || longDone);
                startedWhileLongRan.push(!longDone);
                results.push(script(others[2 * i], others[2 * i + 1], prompts[i + 1], budget));
            }
            const together = await Promise.all(results);
            const longTokens = Array.from((await long).tokens);
            assert.ok(startedWhileLongRan[0], "the first script joined while the long generation ran");
            assert.deepEqual(longTokens, longAlone, "the long generation is unaffected");
            together.forEach((r, i) => assert.deepEqual(r, alone[i], `script ${i} equals its run alone`));
            await ctx.release(seq0, ...others);
        });

        it("the event loop stays free while a long generation runs: a 1 ms timer keeps firing and sees the steps advance", async () => {
            const ctx = model.context;
            const [seq] = await ctx.lease(1);
            await ctx.prefill(seq, model.tokenize(formatPrompt("Write a long story about a lighthouse keeper.")));
            let ticks = 0;
            const stepsSeen = new Set<number>();
            let done = false;
            const timer = setInterval(() => {
                if (done) return;
                ticks++;
                stepsSeen.add(ctx.stats.steps);
            }, 1);
            let segment: NativeSegment;
            try {
                segment = await ctx.generateOne(seq, 450);
            } finally {
                done = true;
                clearInterval(timer);
            }
            assert.ok(segment.tokens.length >= 100, `${segment.tokens.length} tokens generated`);
            // A generation that blocked the JS thread would let the timer run at most once; here it
            // runs between steps, and sees the step counter at many values on the way.
            assert.ok(ticks >= 20, `${ticks} timer ticks during ${segment.tokens.length} tokens`);
            assert.ok(stepsSeen.size >= 10, `the timer saw ${stepsSeen.size} different step counts`);
            await ctx.release(seq);
        });
    });

    describe("a full KV cache (kvCells below slots x contextSize)", () => {
        let native: NativeModel;
        let ctx: DecodingContext;
        const kvCells = 256;
        before(async () => {
            const {addon} = await loadAddon({gpu: false});
            native = new addon.Model();
            await native.load(await randomModel(), {gpuLayers: 0, useMmap: true});
            const reflectionIds = native.findTokens(REFLECTION_TOKENS.map((t) => t.text));
            ctx = new DecodingContext((onComplete) => new addon.Context(native, {contextSize: 256, sequences: 4, threads: 1, threadsBatch: 1,
                batchSize: 64, unifiedKv: true, kvCells, reflectionIds}, onComplete), reflectionIds);
        });
        after(async () => {
            await ctx?.dispose();
            native?.dispose();
        });

        const tokens = (n: number, seed: number) => {
            const rng = mulberry32(seed);
            return Int32Array.from({length: n}, () => 100 + Math.floor(rng() * 30000));
        };

        it("a prefill that outgrows the free cells halves its views, then fails alone with KV_FULL and leaves its slot as it was", async () => {
            assert.equal(ctx.info.contextSize, kvCells, "llama.cpp made the cache the size asked for");
            assert.equal(ctx.info.contextPerSequence, 256);
            await ctx.prefill(0, tokens(200, 1));
            const before = ctx.stats;
            // 100 tokens, 56 free cells, views of 64: 64 fails, 32 + 16 + 8 fit (the halving), then
            // nothing fits: the loop waits for cells, none come, the prefill fails.
            await assert.rejects(ctx.prefill(1, tokens(100, 2)), rejectsWith("KV_FULL", /no free KV cell: the context's 256 cells are in use/));
            const after = ctx.stats;
            assert.equal(after.tokensEvaluated - before.tokensEvaluated, 56, "the halving decoded every token that had a cell");
            assert.ok(after.decodeCalls - before.decodeCalls >= 3, "in several shrinking views");
            assert.equal(ctx.sequenceInfo(1).nPast, 0, "the failed prefill's cells were given back");
            assert.equal(ctx.sequenceInfo(0).nPast, 200, "the other slot is untouched");
            // The cells are free again: 56 tokens fit now.
            const rows = await ctx.prefill(1, tokens(56, 3));
            assert.equal(rows.argmax.length, 1);
            await ctx.clear(1);
        });

        it("a generation that runs out of cells stops with kv_full, its tokens equal to those of a roomy context; freeing cells lets it go on", async () => {
            const prompt = tokens(40, 4);
            await ctx.prefill(1, prompt);
            assert.equal(ctx.sequenceInfo(1).nPast, 40);
            const segment = await ctx.generateOne(1, 100);
            assert.equal(segment.stopReason, "kv_full");
            // 16 free cells: 16 tokens decoded, plus the last one chosen and left undecoded.
            assert.equal(segment.tokens.length, 17);
            assert.equal(ctx.sequenceInfo(1).nPast, 56);

            // The same generation where cells are plenty: the same first 17 tokens.
            const {addon} = await loadAddon({gpu: false});
            const roomy = new DecodingContext((onComplete) => new addon.Context(native, {contextSize: 256, sequences: 1, threads: 1,
                threadsBatch: 1, batchSize: 64, unifiedKv: true, reflectionIds: ctx.reflectionIds}, onComplete), ctx.reflectionIds);
            try {
                await roomy.prefill(0, prompt);
                const free = await roomy.generateOne(0, 100);
                assert.deepEqual(Array.from(segment.tokens), Array.from(free.tokens.subarray(0, 17)));
                segment.logprobs.forEach((l, i) => assert.ok(Math.abs(l - free.logprobs[i]) < 1e-4, `log-prob ${i}`));
            } finally {
                await roomy.dispose();
            }
            // Slot 0 gives its cells back; slot 1 continues from where it stopped.
            await ctx.clear(0);
            const more = await ctx.generateOne(1, 5);
            assert.equal(more.stopReason, "length");
            assert.equal(more.tokens.length, 5);
            await ctx.clear(1);
        });

        it("kvCells is refused without the unified cache", async () => {
            const {addon} = await loadAddon({gpu: false});
            assert.throws(() => new addon.Context(native, {contextSize: 256, sequences: 2, threads: 1, threadsBatch: 1, batchSize: 64,
                unifiedKv: false, kvCells: 256, reflectionIds: ctx.reflectionIds}, () => undefined), rejectsWith("INVALID_ARGUMENT", /unified/));
        });
    });

    describe("models whose logits are not finite", () => {
        const NAN_TOKEN = 1000;
        const RETRIEVAL = 32001;

        it("NaN logits: every request on the model fails with NAN_LOGITS naming the token, slots are freed, the process goes on", async () => {
            const model = await SelfRagModel.load({modelPath: await poisonedModel("nan", NAN_TOKEN), sequences: 4, contextSize: 256, gpu: false});
            try {
                await assert.rejects(model.inspect(formatPrompt("What is the capital of France?")),
                    rejectsWith("NAN_LOGITS", new RegExp(`sequence \\d+ after position \\d+ holds NaN at index ${NAN_TOKEN}\\b`)));
                await assert.rejects(model.answer("What is the capital of France?", {passages: [{title: "Paris", text: "Paris is in France."}]}),
                    rejectsWith("NAN_LOGITS"));
                assert.equal(model.context.slots.inUse, 0);
                await waitFor("the loop to drain", () => model.context.stats.pendingWork === 0);
            } finally {
                await model.dispose();
            }
            // The same process still answers with a sound model.
            const sound = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 2, contextSize: 256, gpu: false});
            try {
                assert.equal((await sound.answer("What is the capital of France?", {passages: [{title: "Paris", text: "Paris is the capital and largest city of France. Paris"}]})).answer, "Paris.");
            } finally {
                await sound.dispose();
            }
        });

        it("+Infinity logits: the +Inf token is the certain choice (log-prob 0), every other token -Infinity, on prefill and generation", async () => {
            const model = await SelfRagModel.load({modelPath: await poisonedModel("inf", RETRIEVAL), sequences: 2, contextSize: 256, gpu: false});
            try {
                const inspected = await model.inspect(formatPrompt("Say hello."));
                assert.equal(inspected.next.id, RETRIEVAL);
                assert.equal(inspected.next.logprob, 0);
                assert.equal(inspected.reflection["[Retrieval]"], 0);
                for (const t of REFLECTION_TOKENS) {
                    if (t.text !== "[Retrieval]") assert.equal(inspected.reflection[t.text], Number.NEGATIVE_INFINITY, t.text);
                }
                assert.equal(inspected.p_retrieve, 1);
                const [seq] = await model.context.lease(1);
                const rows = await model.context.prefill(seq, model.tokenize(formatPrompt("Say hello.")));
                assert.equal(rows.logSumExp[0], Number.POSITIVE_INFINITY);
                const segment = await model.context.generateOne(seq, 6);
                assert.deepEqual(Array.from(segment.tokens), Array(6).fill(RETRIEVAL));
                assert.deepEqual(Array.from(segment.logprobs), Array(6).fill(0));
                assert.equal(segment.reflection[R.retrieval], 0);
                assert.equal(segment.reflection[R.noRetrieval], Number.NEGATIVE_INFINITY);
                await model.context.release(seq);
            } finally {
                await model.dispose();
            }
        });
    });

    describe("model files that are not what they claim", () => {
        it("a vocabulary-only GGUF is reported as a valid GGUF with no tensors, not as truncated", async () => {
            const file = vocabularyOnlyGguf();
            await assert.rejects(SelfRagModel.load({modelPath: file, gpu: false}),
                rejectsWith("INVALID_GGUF", /ggml-vocab-llama-spm\.gguf is a valid GGUF file with no tensors \(a vocabulary-only file\?\): .* no weights/));
            // A real truncation of that file is still called one.
            const cut = path.join(tempDir, "vocab-cut.gguf");
            fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, 300_000));
            await assert.rejects(SelfRagModel.load({modelPath: cut, gpu: false}), rejectsWith("INVALID_GGUF", /truncated|unreadable/));
        });

        it("bit flips in a model's header or weights: a coded error or a model that loads, never a crash (in a child process)", async function () {
            this.timeout(300_000);
            const source = fs.readFileSync(await tinyModel());
            const rng = mulberry32(11);
            const files: string[] = [];
            // Header bytes (magic, version, counts, keys, string lengths, tensor infos) and weight bytes.
            const headerEnd = 800_000;
            const positions = [0, 3, 4, 8, 16, 24, 30, 40, ...Array.from({length: 14}, () => 40 + Math.floor(rng() * headerEnd)),
                source.length - 1000, Math.floor(source.length / 2)];
            for (const [i, at] of positions.entries()) {
                const bytes = Buffer.from(source);
                bytes[at] ^= 1 << Math.floor(rng() * 8);
                const file = path.join(tempDir, `flip-${i}.gguf`);
                fs.writeFileSync(file, bytes);
                files.push(file);
            }
            const script = path.join(here, "..", "test-support", "loadOutcomes.js");
            const {stdout} = await run(process.execPath, [script, ...files], {maxBuffer: 1 << 24});
            const outcomes = JSON.parse(stdout) as {file: string, outcome: string, code?: string, message?: string}[];
            assert.equal(outcomes.length, files.length, "the child process loaded every file and exited normally");
            for (const o of outcomes) {
                assert.ok(o.outcome === "loaded" || (o.outcome === "error" && ["INVALID_GGUF", "MODEL_LOAD_FAILED", "MISSING_REFLECTION_TOKENS"].includes(o.code!)),
                    `${path.basename(o.file)}: ${JSON.stringify(o)}`);
            }
            assert.ok(outcomes.some((o) => o.outcome === "error"), "some flips are caught");
        });
    });
});
