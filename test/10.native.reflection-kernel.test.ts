// The fused kernel (argmax, logsumexp, log-probs of the reflection ids per logits row) against a
// plain TypeScript log-softmax in doubles, through every instruction set this CPU runs (scalar,
// AVX2, AVX-512: the ISA is chosen per call, so one machine tests every path it supports), plus the
// defined behaviour on non-finite rows and the addon's own checks of its typed-array arguments.
import assert from "node:assert/strict";
import {loadAddon} from "../lib/engine/addon.js";
import type {KernelIsa, NativeAddon, NativeExtractOutput} from "../lib/engine/types.js";
import {extractWith} from "../lib/engine/ReflectionKernel.js";
import {SelfRagError} from "../lib/errors.js";
import {referenceRow} from "../test-support/oracles.js";
import {mulberry32} from "../test-support/random.js";

const VOCAB = 32016;
const IDS = Int32Array.from({length: 15}, (_, i) => 32000 + i);
/**
 * Absolute tolerance on log-probs (the kernel's exp polynomial is good to ~2e-7 relative), plus the
 * float32 spacing of the value itself where that is coarser (only log-probs beyond about -100).
 */
const LOGPROB_TOLERANCE = 2e-5;

function randomRows(rows: number, vocab: number, seed: number, scale = 4): Float32Array {
    const next = mulberry32(seed);
    const out = new Float32Array(rows * vocab);
    for (let i = 0; i < out.length; i++) out[i] = (next() * 2 - 1) * scale;
    return out;
}

/** The spacing of float32 values around x: a logsumexp of -1e4 cannot be stored closer than this. */
function ulp32(x: number): number {
    const e = Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -126)));
    return 2 ** (e - 23);
}

function outputs(rows: number, nIds: number): NativeExtractOutput {
    return {argmax: new Int32Array(rows), argmaxLogprob: new Float32Array(rows), logSumExp: new Float32Array(rows),
        reflection: new Float32Array(rows * nIds)};
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
        console.log(`      (kernel paths on this CPU: ${isas.join(", ")}; auto picks ${addon.kernelIsa()})`);
    });

    function checkAgainstOracle(logits: Float32Array, rows: number, vocab: number, ids: Int32Array, isa: KernelIsa, threads = 1) {
        const out = extractWith(addon, logits, rows, vocab, ids, {isa, threads});
        for (let r = 0; r < rows; r++) {
            const row = logits.subarray(r * vocab, (r + 1) * vocab);
            const expected = referenceRow(row, ids);
            assert.equal(out.argmax[r], expected.argmax, `${isa} row ${r} argmax`);
            // logsumexp is returned as a float32: at -1e4 its spacing is 1e-3, so the bound is the
            // absolute tolerance plus that rounding. Log-probs do not inherit it: absolute tolerance.
            const lseTolerance = LOGPROB_TOLERANCE + ulp32(expected.logSumExp);
            assert.ok(Math.abs(out.logSumExp[r] - expected.logSumExp) <= lseTolerance,
                `${isa} row ${r} logsumexp ${out.logSumExp[r]} vs ${expected.logSumExp}`);
            assert.ok(Math.abs(out.argmaxLogprob[r] - expected.argmaxLogprob) <= LOGPROB_TOLERANCE + ulp32(expected.argmaxLogprob),
                `${isa} row ${r} argmax log-prob ${out.argmaxLogprob[r]} vs ${expected.argmaxLogprob}`);
            for (let k = 0; k < ids.length; k++) {
                const got = out.reflection[r * ids.length + k];
                assert.ok(!Number.isNaN(got), `${isa} row ${r} id ${ids[k]} is NaN`);
                // A log-prob of -1e4 is itself a float32: its own spacing (1e-3) is added to the bound.
                assert.ok(Math.abs(got - expected.logprobs[k]) <= LOGPROB_TOLERANCE + ulp32(expected.logprobs[k]),
                    `${isa} row ${r} id ${ids[k]}: ${got} vs ${expected.logprobs[k]}`);
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
        const rows = 6;
        const logits = randomRows(rows, VOCAB, 11);
        logits.fill(-1e4, 0, VOCAB); // row 0: all -1e4 (all equal, very negative)
        logits[VOCAB + 32010] = 80; // row 1: one +80 spike on a reflection id
        logits[VOCAB + 5] = 80; // ... and a tie: the first index wins
        logits.fill(0, 2 * VOCAB, 3 * VOCAB); // row 2: all equal
        for (let i = 3 * VOCAB; i < 4 * VOCAB; i += 2) logits[i] = -1e4; // row 3: alternating -1e4
        logits[5 * VOCAB - 1] = 80; // row 4: maximum in the very last (tail) element
        for (let i = 5 * VOCAB; i < 6 * VOCAB; i++) logits[i] += 3e4; // row 5: everything near +3e4
        for (const isa of isas) {
            const out = checkAgainstOracle(logits, rows, VOCAB, IDS, isa);
            assert.equal(out.argmax[0], 0);
            assert.equal(out.argmax[1], 5, "ties resolve to the lowest index, like a greedy sampler");
            assert.equal(out.argmax[2], 0);
            assert.equal(out.argmax[4], VOCAB - 1);
            assert.ok(Math.abs(out.reflection[0] - -Math.log(VOCAB)) <= LOGPROB_TOLERANCE, "an all -1e4 row gives log(1/V) exactly");
            assert.ok(Math.abs(out.reflection[2 * 15] - -Math.log(VOCAB)) <= LOGPROB_TOLERANCE, "all-equal row gives log(1/V)");
        }
    });

    it("works for vocabularies that are not a multiple of the vector width", () => {
        for (const vocab of [1, 7, 15, 17, 33, 1000]) {
            const logits = randomRows(3, vocab, vocab);
            const ids = Int32Array.from([0, vocab - 1]);
            for (const isa of isas) checkAgainstOracle(logits, 3, vocab, ids, isa);
        }
    });

    it("gives the same answers when rows are split over threads (argmax, logsumexp and every log-prob)", () => {
        const rows = 64;
        const logits = randomRows(rows, 4096, 3);
        for (const isa of isas) {
            const one = extractWith(addon, logits, rows, 4096, IDS.map((id) => id % 4096), {threads: 1, isa});
            const two = extractWith(addon, logits, rows, 4096, IDS.map((id) => id % 4096), {threads: 2, isa});
            assert.deepEqual(two.argmax, one.argmax, isa);
            assert.deepEqual(two.logSumExp, one.logSumExp, isa);
            assert.deepEqual(two.argmaxLogprob, one.argmaxLogprob, isa);
            assert.deepEqual(two.reflection, one.reflection, isa);
        }
    });

    describe("non-finite logits: one defined answer on every path", () => {
        const vocab = 1000;
        const ids = Int32Array.of(0, 3, 17, 500, 999);

        it("a row holding NaN anywhere (every vector lane, the tail) fails with NAN_LOGITS naming the row and index", () => {
            // 67 positions: every lane of a 16-wide and an 8-wide vector, several blocks, the tail.
            const positions = [...Array.from({length: 40}, (_, i) => i), 63, 64, 65, 127, 500, 990, 995, 996, 997, 998, 999];
            for (const isa of isas) {
                for (const at of positions) {
                    const logits = randomRows(3, vocab, at + 1);
                    logits[vocab + 100] = 50; // the true maximum, in a lane the NaN may shadow
                    logits[vocab + at] = Number.NaN;
                    assert.throws(() => extractWith(addon, logits, 3, vocab, ids, {isa}), (e: unknown) => {
                        assert.ok(e instanceof SelfRagError, String(e));
                        assert.equal(e.code, "NAN_LOGITS");
                        assert.match(e.message, new RegExp(`row 1\\b.*NaN.*index ${at}\\b`));
                        return true;
                    }, `${isa}: NaN at ${at}`);
                }
                // Rows split over threads: the first bad row is reported.
                const many = randomRows(64, vocab, 5);
                many[40 * vocab + 7] = Number.NaN;
                many[50 * vocab + 8] = Number.NaN;
                assert.throws(() => extractWith(addon, many, 64, vocab, ids, {isa, threads: 2}), /row 40\b/);
            }
        });

        it("+Infinity: the +Inf token(s) share all the probability (log-prob -log k), every other token -Infinity", () => {
            for (const isa of isas) {
                for (const infAt of [[17], [3, 999], [0, 17, 500], [998]]) {
                    const logits = randomRows(2, vocab, 9);
                    for (const at of infAt) logits[vocab + at] = Number.POSITIVE_INFINITY;
                    logits[vocab + 1] = Number.NEGATIVE_INFINITY;
                    const out = extractWith(addon, logits, 2, vocab, ids, {isa});
                    checkAgainstOracle(logits.subarray(0, vocab), 1, vocab, ids, isa); // row 0 is untouched
                    const k = infAt.length;
                    assert.equal(out.argmax[1], infAt[0], `${isa}: the first +Inf is the greedy choice`);
                    assert.equal(out.logSumExp[1], Number.POSITIVE_INFINITY);
                    assert.ok(Math.abs(out.argmaxLogprob[1] - -Math.log(k)) < 1e-7, `${isa}: ${out.argmaxLogprob[1]}`);
                    ids.forEach((id, j) => {
                        const expected = infAt.includes(id) ? -Math.log(k) : Number.NEGATIVE_INFINITY;
                        const got = out.reflection[ids.length + j];
                        assert.ok(got === expected || Math.abs(got - expected) < 1e-7, `${isa} +Inf at ${infAt}: id ${id} ${got} vs ${expected}`);
                    });
                }
            }
        });

        it("-Infinity entries are impossible tokens (log-prob -Infinity) and do not disturb the rest; a row of only -Infinity fails", () => {
            for (const isa of isas) {
                const logits = randomRows(2, vocab, 21);
                for (let i = 0; i < vocab; i += 3) logits[i] = Number.NEGATIVE_INFINITY; // ids 0, 999 are -Inf
                const out = extractWith(addon, logits, 1, vocab, ids, {isa});
                const finite = Float32Array.from(logits.subarray(0, vocab), (x) => (x === Number.NEGATIVE_INFINITY ? -1e30 : x));
                const expected = referenceRow(finite, ids);
                assert.equal(out.argmax[0], expected.argmax);
                assert.ok(Math.abs(out.argmaxLogprob[0] - expected.argmaxLogprob) <= LOGPROB_TOLERANCE);
                ids.forEach((id, j) => {
                    if (logits[id] === Number.NEGATIVE_INFINITY) assert.equal(out.reflection[j], Number.NEGATIVE_INFINITY, `${isa} id ${id}`);
                    else assert.ok(Math.abs(out.reflection[j] - expected.logprobs[j]) <= LOGPROB_TOLERANCE, `${isa} id ${id}`);
                });
                logits.fill(Number.NEGATIVE_INFINITY, vocab, 2 * vocab);
                assert.throws(() => extractWith(addon, logits, 2, vocab, ids, {isa}),
                    (e: unknown) => e instanceof SelfRagError && e.code === "NAN_LOGITS" && /row 1\b.*-Infinity/.test(e.message), isa);
            }
        });

        it("finite logits near the float32 limits give the double-precision answer on every path", () => {
            const max = 3.4028234663852886e38;
            for (const isa of isas) {
                const logits = randomRows(1, vocab, 4);
                logits[10] = max;
                logits[11] = -max;
                logits[17] = max * 0.5;
                const out = extractWith(addon, logits, 1, vocab, ids, {isa});
                assert.equal(out.argmax[0], 10, isa);
                assert.equal(out.logSumExp[0], Math.fround(max), isa);
                assert.equal(out.argmaxLogprob[0], 0, isa);
                assert.equal(out.reflection[2], Math.fround(logits[17] - logits[10]), `${isa}: id 17, 1.7e38 nats below the maximum`);
            }
        });
    });

    describe("the addon checks its arguments itself (not only the TypeScript wrapper)", () => {
        const call = (overrides: Partial<{logits: unknown, rows: unknown, vocab: unknown, ids: unknown, out: unknown, threads: unknown, isa: unknown}>) => {
            const args = {logits: new Float32Array(64), rows: 2, vocab: 32, ids: Int32Array.of(0, 31), out: outputs(2, 2), threads: 1, isa: "auto", ...overrides};
            return () => (addon.extractReflectionLogprobs as unknown as (...a: unknown[]) => boolean)(
                args.logits, args.rows, args.vocab, args.ids, args.out, args.threads, args.isa);
        };
        // One idiom for every native argument check (native/errors.h): a SelfRagError with code
        // INVALID_ARGUMENT naming the argument, whether its kind or its range is wrong.
        const fails = (name: string) => (e: unknown) => {
            assert.ok(e instanceof SelfRagError, `expected a SelfRagError, got ${String(e)}`);
            assert.equal(e.code, "INVALID_ARGUMENT");
            assert.ok(e.message.includes(name), `"${e.message}" names ${name}`);
            return true;
        };

        it("extractReflectionLogprobs: the kind of every array and number, and every length", () => {
            assert.equal(call({})(), true);
            const guard = new Uint8Array(64).fill(0xab);
            const small = {...outputs(2, 2), argmax: guard.subarray(0, 2)};
            assert.throws(call({out: small}), fails("out.argmax"));
            assert.deepEqual(guard, new Uint8Array(64).fill(0xab), "nothing was written through the wrong array");
            assert.throws(call({logits: new Float64Array(64)}), fails("logits"));
            assert.throws(call({logits: Array.from({length: 64}, () => 0)}), fails("logits"));
            assert.throws(call({ids: new Uint32Array(2)}), fails("ids"));
            assert.throws(call({out: {...outputs(2, 2), argmaxLogprob: new Float64Array(2)}}), fails("out.argmaxLogprob"));
            assert.throws(call({out: {...outputs(2, 2), logSumExp: undefined}}), fails("out.logSumExp"));
            assert.throws(call({out: {...outputs(2, 2), reflection: new Int32Array(4)}}), fails("out.reflection"));
            assert.throws(call({out: null}), fails("out"));
            assert.throws(call({rows: "2"}), fails("rows"));
            assert.throws(call({vocab: 32.5}), fails("vocab"));
            assert.throws(call({threads: {}}), fails("threads"));
            assert.throws(call({isa: 3}), fails("isa"));
            assert.throws(call({logits: new Float32Array(63)}), fails("logits"));
            assert.throws(call({out: {...outputs(2, 2), argmax: new Int32Array(1)}}), fails("out.argmax"));
            assert.throws(call({out: {...outputs(2, 2), reflection: new Float32Array(3)}}), fails("out.reflection"));
            assert.throws(call({rows: -1}), fails("rows"));
            assert.throws(call({vocab: 0}), fails("vocab"));
        });

        it("scoreSegments: kinds, lengths and offsets are checked before anything is read", () => {
            const ids = Int32Array.from({length: 15}, (_, i) => 32000 + i);
            const weights = {relevance: 1, support: 1, utility: 0.5, useSequenceScore: true, referenceLongFormUtility: false};
            const good = {offsets: Int32Array.of(0, 2, 3), tokens: Int32Array.of(1, 2, 3), logprobs: new Float32Array(3), reflection: new Float32Array(45), ids};
            const score = (o: Partial<Record<keyof typeof good, unknown>>) => () => (addon.scoreSegments as unknown as (...a: unknown[]) => Float64Array)(
                o.offsets ?? good.offsets, o.tokens ?? good.tokens, o.logprobs ?? good.logprobs, o.reflection ?? good.reflection, o.ids ?? good.ids, weights);
            assert.equal(score({})().length, 10);
            assert.throws(score({offsets: new Uint8Array(3)}), fails("offsets"));
            assert.throws(score({tokens: new Float32Array(3)}), fails("tokens"));
            assert.throws(score({logprobs: new Uint8Array(12)}), fails("logprobs"));
            assert.throws(score({reflection: new Float64Array(45)}), fails("reflection"));
            assert.throws(score({ids: new Float32Array(15)}), fails("reflectionIds"));
            assert.throws(score({reflection: new Float32Array(44)}), fails("reflection"));
            // An offset beyond the data in the middle of the list (the last one is in range).
            assert.throws(score({offsets: Int32Array.of(0, 1000000, 3)}), fails("offsets"));
            assert.throws(score({offsets: Int32Array.of(-5, 0, 3)}), fails("offsets"));
        });

        it("the TypeScript wrapper still reports its own checks as SelfRagError INVALID_ARGUMENT", () => {
            assert.throws(() => extractWith(addon, new Float32Array(10), 2, 10, IDS), (e: unknown) => e instanceof SelfRagError && e.code === "INVALID_ARGUMENT");
            assert.throws(() => extractWith(addon, new Float32Array(10), 1, 10, [1, 2] as unknown as Int32Array), SelfRagError);
        });
    });

    it("computes the in-segment retrieval ratio stably far below -100", () => {
        // (P(ret) + P(cont)) / (P(ret) + P(noret)) with log-probs around -200: naive exp underflows to 0/0.
        const ratio = addon.retrievalRatio(-200, -201, -199);
        const expected = (Math.exp(0) + Math.exp(-1)) / (Math.exp(0) + Math.exp(1));
        assert.ok(Math.abs(ratio - expected) < 1e-9, `${ratio} vs ${expected}`);
        assert.ok(Math.abs(addon.retrievalRatio(Math.log(0.3), Math.log(0.1), Math.log(0.5)) - 0.4 / 0.8) < 1e-6);
    });
});
