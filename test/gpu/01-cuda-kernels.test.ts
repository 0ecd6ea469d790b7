// On a CUDA device (npm run test:gpu; never in npm test): the real kernels against the CPU
// kernel on the same rows, and a short-form answer with the model on the GPU (rows reduced at
// the output tensor by the CUDA kernel) against the CPU path: tokens equal, scores within 1e-4.
import assert from "node:assert/strict";
import {execFileSync} from "node:child_process";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {loadAddon} from "../../lib/engine/addon.js";
import {extractWith} from "../../lib/engine/ReflectionKernel.js";
import type {NativeAddon} from "../../lib/engine/types.js";
import {SelfRagModel} from "../../lib/SelfRagModel.js";
import {randomModel} from "../../test-support/fixtures.js";
import {mulberry32} from "../../test-support/random.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const IDS = Int32Array.from({length: 15}, (_, i) => 32000 + i);

function randomRows(rows: number, vocab: number, seed: number): Float32Array {
    const next = mulberry32(seed);
    return Float32Array.from({length: rows * vocab}, () => (next() * 2 - 1) * 6);
}

const QUESTION = {question: "Which city is the capital of Italy?", passages: [
    {title: "Rome", text: "Rome is the capital city of Italy, on the Tiber."},
    {title: "Paris", text: "Paris is the capital of France, on the Seine."},
    {title: "Vienna", text: "Vienna is the capital of Austria, on the Danube."}]};
const OPTIONS = {ndocs: 3, maxNewTokens: 24, mode: "always" as const, traces: true};

describe("CUDA kernels on the device", function () {
    this.timeout(600_000);
    let addon: NativeAddon;

    before(async () => {
        ({addon} = await loadAddon({gpu: "cuda"}));
        assert.ok(addon.cudaDevice().available, addon.cudaDevice().reason);
    });

    it("reflection extraction: 1 to 256 rows, the CPU kernel's answers (and NaN / +Infinity rows the same way)", () => {
        for (const rows of [1, 7, 64, 256]) {
            const logits = randomRows(rows, 32016, rows);
            if (rows >= 7) {
                logits[3 * 32016 + 32004] = Number.POSITIVE_INFINITY;
                logits[3 * 32016 + 9] = Number.POSITIVE_INFINITY;
            }
            const gpu = extractWith(addon, logits, rows, 32016, IDS, {isa: "cuda"});
            const cpu = extractWith(addon, logits, rows, 32016, IDS, {isa: "scalar"});
            assert.deepEqual(gpu.argmax, cpu.argmax, `${rows} rows: argmax`);
            for (let i = 0; i < cpu.reflection.length; i++) {
                const a = gpu.reflection[i];
                const b = cpu.reflection[i];
                assert.ok(a === b || Math.abs(a - b) <= 2e-5, `${rows} rows: reflection ${i}: ${a} vs ${b}`);
            }
        }
        const bad = randomRows(4, 1000, 3);
        bad[2 * 1000 + 517] = Number.NaN;
        assert.throws(() => extractWith(addon, bad, 4, 1000, Int32Array.of(1, 2), {isa: "cuda"}), /row 2\b.*index 517\b/);
    });

    it("segment scoring: the GPU kernel gives the CPU scorer's values", () => {
        const next = mulberry32(5);
        const n = 300;
        const lengths = Array.from({length: n}, () => Math.floor(next() * 20));
        const offsets = new Int32Array(n + 1);
        lengths.forEach((l, i) => (offsets[i + 1] = offsets[i] + l));
        const total = offsets[n];
        const tokens = Int32Array.from({length: total}, () => (next() < 0.3 ? IDS[Math.floor(next() * 15)] : Math.floor(next() * 32000)));
        const logprobs = Float32Array.from({length: total}, () => -next() * 200);
        const reflection = Float32Array.from({length: total * 15}, () => -next() * 200);
        const weights = {relevance: 1, support: 1, utility: 0.5, useSequenceScore: true, referenceLongFormUtility: false};
        const gpu = addon.scoreSegments(offsets, tokens, logprobs, reflection, IDS, weights, "cuda");
        const cpu = addon.scoreSegments(offsets, tokens, logprobs, reflection, IDS, weights);
        for (let i = 0; i < cpu.length; i++) assert.ok(Math.abs(gpu[i] - cpu[i]) <= 1e-9 * Math.max(1, Math.abs(cpu[i])), `value ${i}`);
    });

    it("a short-form answer on the GPU (extraction at the output tensor) equals the CPU path's: tokens, scores within 1e-4", async () => {
        const modelPath = await randomModel();
        const model = await SelfRagModel.load({modelPath, gpu: "cuda", sequences: 4, contextSize: 512});
        let onGpu;
        try {
            assert.equal(model.context.info.extraction, "output");
            onGpu = await model.answer(QUESTION, OPTIONS);
            assert.ok(model.context.stats.rowsOnDevice > 0, "rows went through the CUDA kernel");
            assert.equal(model.context.stats.extractionError, undefined);
        } finally {
            await model.dispose();
        }
        // The CPU path in its own process (one llama.cpp variant per process).
        const script = `import {SelfRagModel} from ${JSON.stringify(path.join(here, "..", "..", "lib", "SelfRagModel.js"))};
            const m = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, gpu: false, sequences: 4, contextSize: 512});
            const a = await m.answer(${JSON.stringify(QUESTION)}, ${JSON.stringify(OPTIONS)});
            console.log(JSON.stringify(a)); await m.dispose();`;
        const onCpu = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], {encoding: "utf8"}).trim().split("\n").at(-1)!);
        assert.deepEqual(onGpu.trace!.candidates.map((c) => c.tokens), onCpu.trace.candidates.map((c: {tokens: number[]}) => c.tokens));
        onGpu.candidates.forEach((c, i) => assert.ok(Math.abs(c.score - onCpu.candidates[i].score) <= 1e-4, `candidate ${i} score`));
        assert.equal(onGpu.answer, onCpu.answer);
    });
});
