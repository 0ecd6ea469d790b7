import assert from "node:assert/strict";
import {loadAddon} from "../lib/engine/addon.js";
import type {KernelIsa, NativeAddon} from "../lib/engine/types.js";
import {extractWith} from "../lib/engine/ReflectionKernel.js";
import {SelfRagError} from "../lib/errors.js";
import {referenceRow} from "../test-support/oracles.js";
import {mulberry32} from "../test-support/random.js";

const VOCAB = 32016;
const IDS = Int32Array.from({length: 15}, (_, i) => 32000 + i);

function randomRows(rows: number, vocab: number, seed: number, scale = 4): Float32Array {
    const next = mulberry32(seed);
    const out = new Float32Array(rows * vocab);
    for (let i = 0; i < out.length; i++) out[i] = (next() * 2 - 1) * scale;
    return out;
}

describe("fused reflection kernel", () => {
    let addon: NativeAddon;
    const isas: KernelIsa[] = [];

    before(async () => {
        ({addon} = await loadAddon({gpu: false}));
        const probe = new Float32Array(64);
        for (const isa of ["scalar", "avx2", "avx512f"] as KernelIsa[]) {
            try {
                extractWith(addon, probe, 1, 64, Int32Array.of(0), {isa});
                isas.push(isa);
            } catch (error) {
                assert.ok(error instanceof SelfRagError);
            }
        }
        assert.ok(isas.includes("scalar"), "the scalar kernel runs everywhere");
    });

    function checkAgainstOracle(logits: Float32Array, rows: number, vocab: number, ids: Int32Array, isa: KernelIsa, threads = 1) {
        const out = extractWith(addon, logits, rows, vocab, ids, {isa, threads});
        for (let r = 0; r < rows; r++) {
            const row = logits.subarray(r * vocab, (r + 1) * vocab);
            const expected = referenceRow(row, ids);
            assert.equal(out.argmax[r], expected.argmax, `${isa} row ${r} argmax`);
            const tolerance = 1e-4 * Math.max(1, Math.abs(expected.logSumExp));
            assert.ok(Math.abs(out.logSumExp[r] - expected.logSumExp) <= tolerance,
                `${isa} row ${r} logsumexp ${out.logSumExp[r]} vs ${expected.logSumExp}`);
            assert.ok(Math.abs(out.argmaxLogprob[r] - expected.argmaxLogprob) <= tolerance, `${isa} row ${r} argmax log-prob`);
            for (let k = 0; k < ids.length; k++) {
                const got = out.reflection[r * ids.length + k];
                assert.ok(!Number.isNaN(got), `${isa} row ${r} id ${ids[k]} is NaN`);
                assert.ok(Math.abs(got - expected.logprobs[k]) <= tolerance, `${isa} row ${r} id ${ids[k]}: ${got} vs ${expected.logprobs[k]}`);
            }
        }
        return out;
    }

    it("matches the TypeScript log-softmax on random rows, for every instruction set this CPU runs", () => {
        const rows = 6;
        const logits = randomRows(rows, VOCAB, 7);
        for (const isa of isas) checkAgainstOracle(logits, rows, VOCAB, IDS, isa);
    });

    it("handles extreme values: -1e4 everywhere, +80 spikes, all-equal rows, tails shorter than a vector", () => {
        const rows = 5;
        const logits = randomRows(rows, VOCAB, 11);
        logits.fill(-1e4, 0, VOCAB); // row 0: all -1e4 (all equal, very negative)
        logits[VOCAB + 32010] = 80; // row 1: one +80 spike on a reflection id
        logits[VOCAB + 5] = 80; // ... and a tie: the first index wins
        logits.fill(0, 2 * VOCAB, 3 * VOCAB); // row 2: all equal
        for (let i = 3 * VOCAB; i < 4 * VOCAB; i += 2) logits[i] = -1e4; // row 3: alternating -1e4
        logits[5 * VOCAB - 1] = 80; // row 4: maximum in the very last (tail) element
        for (const isa of isas) {
            const out = checkAgainstOracle(logits, rows, VOCAB, IDS, isa);
            assert.equal(out.argmax[0], 0);
            assert.equal(out.argmax[1], 5, "ties resolve to the lowest index, like a greedy sampler");
            assert.equal(out.argmax[2], 0);
            assert.equal(out.argmax[4], VOCAB - 1);
            assert.ok(Math.abs(out.reflection[2 * 15] - -Math.log(VOCAB)) < 1e-4, "all-equal row gives log(1/V)");
        }
    });

    it("works for vocabularies that are not a multiple of the vector width", () => {
        for (const vocab of [1, 7, 15, 17, 33, 1000]) {
            const logits = randomRows(3, vocab, vocab);
            const ids = Int32Array.from([0, vocab - 1]);
            for (const isa of isas) checkAgainstOracle(logits, 3, vocab, ids, isa);
        }
    });

    it("gives the same answers when rows are split over threads", () => {
        const rows = 64;
        const logits = randomRows(rows, 4096, 3);
        const one = extractWith(addon, logits, rows, 4096, IDS.map((id) => id % 4096), {threads: 1});
        const two = extractWith(addon, logits, rows, 4096, IDS.map((id) => id % 4096), {threads: 2});
        assert.deepEqual(two.argmax, one.argmax);
        assert.deepEqual(two.reflection, one.reflection);
    });

    it("rejects arrays that do not hold rows x vocab values", () => {
        assert.throws(() => extractWith(addon, new Float32Array(10), 2, 10, IDS), (e: unknown) => e instanceof SelfRagError && e.code === "INVALID_ARGUMENT");
        assert.throws(() => extractWith(addon, new Float32Array(10), 1, 10, [1, 2] as unknown as Int32Array), SelfRagError);
    });

    it("computes the in-segment retrieval ratio stably far below -100", () => {
        // (P(ret) + P(cont)) / (P(ret) + P(noret)) with log-probs around -200: naive exp underflows to 0/0.
        const ratio = addon.retrievalRatio(-200, -201, -199);
        const expected = (Math.exp(0) + Math.exp(-1)) / (Math.exp(0) + Math.exp(1));
        assert.ok(Math.abs(ratio - expected) < 1e-9, `${ratio} vs ${expected}`);
        assert.ok(Math.abs(addon.retrievalRatio(Math.log(0.3), Math.log(0.1), Math.log(0.5)) - 0.4 / 0.8) < 1e-6);
    });
});
