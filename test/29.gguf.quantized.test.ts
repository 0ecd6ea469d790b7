// Q4_0 and Q8_0 tensors of the GGUF writer (lib/gguf/quantize.ts) against llama.cpp itself:
// - block by block against ggml's own quantize_row_*_ref, dequantize_row_* and fp32->fp16, called
//   from node-llama-cpp's prebuilt libggml-base by a small C++ program (test-support/ggmlQuantOracle.cpp),
//   on random and adversarial blocks: bytes and floats must be identical;
// - as a model: a small random model written as Q4_0 / Q8_0 is loaded by llama.cpp and its
//   next-token log-probs compared with an f32 model holding the dequantized weights (stated
//   tolerance; llama.cpp's quantized matmuls also quantize activations to 8 bits) and with the f32
//   model of the unquantized weights (which Q4_0 must be measurably farther from).
// The 1B fixture (`selfrag fixture --kind 1b`) is for benches; it uses this same writer path.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type {LlamaContext, LlamaModel} from "node-llama-cpp";
import {fixtureCommand} from "../lib/cli/fixtureCommand.js";
import {readSelfRagVocab, streamedRandomModelWriter, type FixtureQuant, type Shape} from "../lib/fixtures/FixtureModel.js";
import {dequantizeQ4_0, dequantizeQ8_0, fp32ToFp16Bits, quantizeQ4_0, quantizeQ8_0} from "../lib/gguf/quantize.js";
import {packageRoot} from "../lib/paths.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {prompt, tempDir} from "../test-support/fixtures.js";
import {nodeLlamaCppLogprobs} from "../test-support/oracles.js";
import {mulberry32} from "../test-support/random.js";

const BLOCKS = 4096;
/** Largest |log-prob difference| allowed between a quantized model and the f32 model of its dequantized weights. */
const LOGPROB_TOLERANCE = 0.05;

function cpuLibDir(): string | undefined {
    const out = spawnSync(process.execPath, [path.join(packageRoot, "scripts", "llama-paths.mjs"), "cpu-libdir"], {encoding: "utf8"});
    const dir = out.stdout.trim();
    return out.status === 0 && fs.existsSync(path.join(dir, "libggml-base.so")) ? dir : undefined;
}

/** Random and adversarial blocks of 32 values, one kind after another. */
function testValues(): Float32Array {
    const next = mulberry32(2026);
    const gauss = () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
    const out = new Float32Array(BLOCKS * 32);
    const kinds = 12;
    for (let b = 0; b < BLOCKS; b++) {
        const block = out.subarray(b * 32, (b + 1) * 32);
        switch (b % kinds) {
            case 0: block.forEach((_, j) => (block[j] = gauss() * 0.02)); break;
            case 1: block.forEach((_, j) => (block[j] = gauss())); break;
            case 2: block.forEach((_, j) => (block[j] = (next() * 2 - 1) * 1000)); break;
            case 3: block.fill(0); break;
            case 4: block.fill(-0); block[5] = 1e-3; break;
            case 5: // the same magnitude with both signs: Q4_0 keeps the first as its scale
                block.forEach((_, j) => (block[j] = gauss() * 0.1));
                block[3] = 0.75;
                block[20] = -0.75;
                break;
            case 6: // Q8_0 with d = 1: halves round away from zero
                block.forEach((_, j) => (block[j] = Math.floor(next() * 254) - 127 + 0.5));
                block[0] = 127;
                break;
            case 7: // Q4_0 with d = 1 (scale value -8): x + 8.5 lands exactly on integers and halves
                block.forEach((_, j) => (block[j] = Math.floor(next() * 32) / 2 - 8));
                block[0] = -8;
                break;
            case 8: block.forEach((_, j) => (block[j] = gauss() * 1e-6)); break; // fp16 scale subnormal
            case 9: block.forEach((_, j) => (block[j] = gauss() * 1e-30)); break; // fp16 scale flushes to 0
            case 10: block.forEach((_, j) => (block[j] = gauss() * 1e6)); break; // fp16 scale overflows to Infinity
            case 11: block.forEach((_, j) => (block[j] = gauss() * 0.01)); block[next() * 32 | 0] = 40; break; // one outlier
        }
    }
    return out;
}

function bits(values: Float32Array): Uint32Array {
    return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

describe("GGUF Q4_0 / Q8_0 tensors against llama.cpp", function () {
    this.timeout(600_000);
    let oracle: string | undefined;

    before(function () {
        const libDir = cpuLibDir();
        if (libDir == null || process.platform !== "linux") return;
        oracle = path.join(tempDir, "ggml-quant-oracle");
        const build = spawnSync("g++", ["-O1", "-std=c++17", path.join(packageRoot, "test-support", "ggmlQuantOracle.cpp"), "-o", oracle,
            `-L${libDir}`, "-lggml-base", `-Wl,-rpath,${libDir}`], {encoding: "utf8"});
        assert.equal(build.status, 0, `building the ggml oracle: ${build.stderr}`);
    });

    for (const type of ["q4_0", "q8_0"] as const) {
        it(`${type}: the writer's blocks are ggml's quantize_row_${type}_ref bytes, and its dequantization is ggml's dequantize_row_${type}, on ${BLOCKS} random and adversarial blocks`, function () {
            if (oracle == null) this.skip(); // needs node-llama-cpp's Linux libggml-base and g++
            const values = testValues();
            const ours = type === "q4_0" ? quantizeQ4_0(values) : quantizeQ8_0(values);
            const dir = fs.mkdtempSync(path.join(tempDir, `quant-${type}-`));
            const file = (name: string) => path.join(dir, name);
            fs.writeFileSync(file("values.f32"), values);
            fs.writeFileSync(file("ours.bin"), ours);
            const run = spawnSync(oracle!, [type, file("values.f32"), file("ours.bin"), file("ggml.bin"), file("ggml.f32")], {encoding: "utf8"});
            assert.equal(run.status, 0, run.stderr);
            const theirs = new Uint8Array(fs.readFileSync(file("ggml.bin")));
            assert.equal(theirs.length, ours.length);
            const blockBytes = type === "q4_0" ? 18 : 34;
            for (let i = 0; i < ours.length; i++) {
                if (ours[i] !== theirs[i]) assert.fail(`block ${Math.floor(i / blockBytes)} byte ${i % blockBytes}: ${ours[i]} vs ggml ${theirs[i]}`);
            }
            const decodedByGgml = new Float32Array(new Uint8Array(fs.readFileSync(file("ggml.f32"))).buffer);
            const decoded = type === "q4_0" ? dequantizeQ4_0(ours) : dequantizeQ8_0(ours);
            assert.deepEqual(bits(decoded), bits(decodedByGgml), "dequantized values, bit for bit");
            // The round trip is a quantizer's: within half a step (Q4_0: the block's largest magnitude / 8;
            // Q8_0: / 127) plus the fp16 rounding of the scale (up to 2^-11 of it, times the largest quant),
            // for blocks whose scale is a normal fp16 number.
            for (let b = 0; b < BLOCKS; b++) {
                const block = values.subarray(b * 32, (b + 1) * 32);
                const amax = Math.max(...Array.from(block, Math.abs));
                if (amax === 0 || amax / 8 > 60000 || amax / 127 < 6.2e-5) continue;
                const step = type === "q4_0" ? amax / 8 : amax / 127;
                const slack = step * (type === "q4_0" ? 8 : 127) * 2 ** -11 + step * 1e-6;
                for (let j = 0; j < 32; j++) {
                    const error = Math.abs(decoded[b * 32 + j] - block[j]);
                    // Q4_0 has 7 steps above zero and 8 below: the far side of the scale value clips to 7 steps.
                    assert.ok(error <= step * 0.5 + slack || (type === "q4_0" && error <= step + slack),
                        `block ${b} value ${j}: ${block[j]} came back as ${decoded[b * 32 + j]}`);
                }
            }
            fs.rmSync(dir, {recursive: true, force: true});
        });
    }

    it("fp32 -> fp16 is ggml_fp32_to_fp16 bit for bit (ties to even, subnormals, overflow, NaN)", function () {
        if (oracle == null) this.skip();
        const next = mulberry32(7);
        const special = [0, -0, 1, -1, 65504, 65519.996, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 2 ** -14, 6.1e-5,
            1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, -Infinity, NaN, 1e-30, 3.14159];
        const values = new Float32Array(special.length + 20000);
        values.set(special);
        for (let i = special.length; i < values.length; i++) values[i] = (next() * 2 - 1) * 2 ** (next() * 40 - 30);
        const input = path.join(tempDir, "fp16.f32");
        const output = path.join(tempDir, "fp16.u16");
        fs.writeFileSync(input, values);
        const run = spawnSync(oracle!, ["fp16", input, output], {encoding: "utf8"});
        assert.equal(run.status, 0, run.stderr);
        const theirs = new Uint16Array(new Uint8Array(fs.readFileSync(output)).buffer);
        for (let i = 0; i < values.length; i++) {
            assert.equal(fp32ToFp16Bits(values[i]), theirs[i], `fp16 of ${values[i]}`);
        }
    });

    describe("a small random model written as Q4_0 and Q8_0, loaded by llama.cpp", () => {
        // Grouped-query attention like the 1B shape (2 KV heads for 4), every matrix quantized.
        const SHAPE: Shape = {embd: 64, layers: 2, heads: 4, kvHeads: 2, ff: 128};
        const files = new Map<string, string>();
        let model: SelfRagModel;
        const loaded: {model: LlamaModel, context: LlamaContext}[] = [];

        async function write(name: string, quant: FixtureQuant, simulate?: "q4_0" | "q8_0"): Promise<string> {
            const file = path.join(tempDir, `small-${name}.gguf`);
            await streamedRandomModelWriter(await readSelfRagVocab(), SHAPE, quant, 77, `small-${name}`, {simulate}).write(file);
            files.set(name, file);
            return file;
        }

        async function logprobs(file: string, texts: string[]): Promise<number[][]> {
            const nlcModel = await model.llama.loadModel({modelPath: file, gpuLayers: 0});
            const context = await nlcModel.createContext({contextSize: 256, sequences: 1});
            loaded.push({model: nlcModel, context});
            const sequence = context.getSequence();
            const ids = Array.from({length: 16}, (_, i) => 32000 + i).concat([1, 2, 13, 450, 3681, 29889]);
            const out: number[][] = [];
            for (const text of texts) out.push(await nodeLlamaCppLogprobs(sequence, nlcModel.tokenize(text, true), ids));
            sequence.dispose();
            return out;
        }

        before(async () => {
            await write("f32", "f32");
            for (const quant of ["q4_0", "q8_0"] as const) {
                await write(quant, quant);
                await write(`${quant}-as-f32`, "f32", quant);
            }
            // The engine loads the quantized file too (and brings up llama.cpp for node-llama-cpp's side).
            model = await SelfRagModel.load({modelPath: files.get("q4_0")!, contextSize: 256, sequences: 1, gpu: false});
        });

        after(async () => {
            for (const l of loaded) {
                await l.context.dispose();
                await l.model.dispose();
            }
            await model?.dispose();
        });

        it("stores the matrices quantized (file size and tensor types) and the engine answers from it", async () => {
            const {readGgufFileInfo} = await import("node-llama-cpp");
            const sizes = Object.fromEntries([...files].map(([name, file]) => [name, fs.statSync(file).size]));
            for (const quant of ["q4_0", "q8_0"] as const) {
                const info = await readGgufFileInfo(files.get(quant)!, {sourceType: "filesystem", logWarnings: false});
                const types = new Set(info.tensorInfo!.filter((t) => t.dimensions.length === 2).map((t) => t.ggmlType));
                assert.deepEqual([...types], [quant === "q4_0" ? 2 : 8], `${quant}: every matrix`);
                assert.equal((info.metadata as unknown as {general: {file_type: number}}).general.file_type, quant === "q4_0" ? 2 : 7);
                assert.equal((info.metadata as unknown as {llama: {attention: {head_count_kv: number}}}).llama.attention.head_count_kv, 2);
            }
            // Matrices hold 4.5 and 8.5 bits a weight instead of 32 (the vocabulary metadata is the same in all).
            assert.ok(sizes["q4_0"] < sizes["q8_0"] && sizes["q8_0"] < sizes["f32"], JSON.stringify(sizes));
            const answer = await model.answer("What is the capital of France?", {mode: "never", maxNewTokens: 4});
            assert.equal(typeof answer.answer, "string");
            assert.equal(answer.candidates.length, 1);
        });

        it(`gives the log-probs of the f32 model of its dequantized weights within ${LOGPROB_TOLERANCE} (and Q4_0 measurably differs from the unquantized one)`, async () => {
            const texts = [prompt("What is the capital of France?"), prompt("Name a bird") + "[Retrieval]<paragraph>Birds\nSparrows fly.</paragraph>"];
            const reference = await logprobs(files.get("f32")!, texts);
            const worst = (a: number[][], b: number[][]) => Math.max(...a.flatMap((row, i) => row.map((x, k) => Math.abs(x - b[i][k]))));
            const report: Record<string, number> = {};
            for (const quant of ["q4_0", "q8_0"] as const) {
                const quantized = await logprobs(files.get(quant)!, texts);
                const dequantized = await logprobs(files.get(`${quant}-as-f32`)!, texts);
                report[`${quant} vs its dequantized f32`] = worst(quantized, dequantized);
                report[`${quant} vs unquantized f32`] = worst(quantized, reference);
                assert.ok(report[`${quant} vs its dequantized f32`] <= LOGPROB_TOLERANCE, JSON.stringify(report));
            }
            // Q4_0 loses 3-4 bits a weight: a writer that got the blocks wrong would be as far from the
            // dequantized model as from the unquantized one (or farther); a right one is much nearer.
            assert.ok(report["q4_0 vs unquantized f32"] >= 5 * report["q4_0 vs its dequantized f32"], JSON.stringify(report));
            console.log(`      worst |log-prob difference| over 2 prompts x 22 ids: ${JSON.stringify(report)}`);
        });
    });

    it("selfrag fixture refuses --quant where it does not apply and names the choices", async () => {
        const out = path.join(tempDir, "never.gguf");
        await assert.rejects(fixtureCommand(["--out", out, "--kind", "tiny", "--quant", "q4_0"]), /--quant.*--kind 1b/);
        await assert.rejects(fixtureCommand(["--out", out, "--kind", "1b", "--quant", "q5_k"]), /"q4_0".*--quant.*"q5_k"/);
        await assert.rejects(fixtureCommand(["--out", out, "--kind", "2b"]), /"1b".*--kind.*"2b"/);
        assert.equal(fs.existsSync(out), false);
    });
});
