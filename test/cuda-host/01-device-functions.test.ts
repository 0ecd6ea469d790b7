// The CUDA kernels' arithmetic (native/cuda/row_math.h, critique_math.h: __host__ __device__
// functions) built by the host compiler and run in the extraction kernel's own reduction order
// (256 threads per row, shuffle-down trees), against the TypeScript oracles and the CPU kernel.
// Non-finite rows must give the CPU kernel's defined answers (issue 11): NaN or an all -Infinity
// row is invalid (status, first NaN index), k logits of +Infinity share the probability.
import assert from "node:assert/strict";
import {loadAddon} from "../../lib/engine/addon.js";
import {extractWith} from "../../lib/engine/ReflectionKernel.js";
import type {NativeAddon} from "../../lib/engine/types.js";
import {loadHostReplay, type HostReplay} from "../../test-support/cudaHost.js";
import {oracleScore, type OracleCandidate} from "../../test-support/critiqueOracle.js";
import {referenceRow} from "../../test-support/oracles.js";
import {mulberry32} from "../../test-support/random.js";

const VOCAB = 32016;
const IDS = Int32Array.from({length: 15}, (_, i) => 32000 + i);
const TOLERANCE = 2e-5;

function ulp32(x: number): number {
    const e = Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -126)));
    return 2 ** (e - 23);
}

function randomRows(rows: number, vocab: number, seed: number, scale = 4): Float32Array {
    const next = mulberry32(seed);
    const out = new Float32Array(rows * vocab);
    for (let i = 0; i < out.length; i++) out[i] = (next() * 2 - 1) * scale;
    return out;
}

const STATUS = {ok: 0, nan: 1, noFinite: 2};

describe("CUDA device functions, built for the host (test:cuda-host)", () => {
    let replay: HostReplay;
    let addon: NativeAddon;

    before(async () => {
        replay = loadHostReplay();
        ({addon} = await loadAddon({gpu: false}));
        assert.equal(replay.threadsPerRow, 256);
    });

    function checkRows(logits: Float32Array, rows: number, vocab: number, ids: Int32Array) {
        const out = replay.extract(logits, rows, vocab, ids);
        const cpu = extractWith(addon, logits, rows, vocab, ids, {isa: "scalar"});
        for (let r = 0; r < rows; r++) {
            const expected = referenceRow(logits.subarray(r * vocab, (r + 1) * vocab), ids);
            assert.equal(out.status[r], STATUS.ok, `row ${r} status`);
            assert.equal(out.argmax[r], expected.argmax, `row ${r} argmax`);
            assert.equal(out.argmax[r], cpu.argmax[r], `row ${r} argmax vs the CPU kernel`);
            assert.ok(Math.abs(out.logSumExp[r] - expected.logSumExp) <= TOLERANCE + ulp32(expected.logSumExp),
                `row ${r} logsumexp ${out.logSumExp[r]} vs ${expected.logSumExp}`);
            assert.ok(Math.abs(out.argmaxLogprob[r] - expected.argmaxLogprob) <= TOLERANCE + ulp32(expected.argmaxLogprob),
                `row ${r} argmax log-prob`);
            for (let k = 0; k < ids.length; k++) {
                const got = out.reflection[r * ids.length + k];
                assert.ok(Math.abs(got - expected.logprobs[k]) <= TOLERANCE + ulp32(expected.logprobs[k]),
                    `row ${r} id ${ids[k]}: ${got} vs ${expected.logprobs[k]}`);
                assert.ok(Math.abs(got - cpu.reflection[r * ids.length + k]) <= TOLERANCE + ulp32(got), `row ${r} id ${ids[k]} vs the CPU kernel`);
            }
        }
        return out;
    }

    it("random rows: argmax, logsumexp and reflection log-probs match the TypeScript log-softmax and the CPU kernel", () => {
        for (const [seed, scale] of [[1, 4], [2, 20], [3, 0.01]]) checkRows(randomRows(8, VOCAB, seed, scale), 8, VOCAB, IDS);
    });

    it("-1e4 rows, +80 spikes, all-equal rows, ties (lowest index wins across threads and warps), short rows", () => {
        const rows = 6;
        const logits = randomRows(rows, VOCAB, 11);
        logits.fill(-1e4, 0, VOCAB);
        logits[VOCAB + 32010] = 80;
        logits[VOCAB + 5] = 80; // a tie between thread 5 (warp 0) and thread 32010 % 256 = 10: index 5 wins
        logits.fill(0, 2 * VOCAB, 3 * VOCAB);
        logits[3 * VOCAB + 700] = 50; // a tie between warps: thread 700 % 256 = 188 (warp 5)...
        logits[3 * VOCAB + 300] = 50; // ... and thread 44 (warp 1), a later pass of its thread: 300 wins
        logits[5 * VOCAB - 1] = 80;
        for (let i = 5 * VOCAB; i < 6 * VOCAB; i++) logits[i] += 3e4;
        const out = checkRows(logits, rows, VOCAB, IDS);
        assert.deepEqual(Array.from(out.argmax.subarray(0, 5)), [0, 5, 0, 300, VOCAB - 1]);
        assert.ok(Math.abs(out.reflection[0] - -Math.log(VOCAB)) <= TOLERANCE, "an all -1e4 row gives log(1/V)");
        for (const vocab of [1, 7, 31, 255, 256, 257, 1000]) {
            checkRows(randomRows(3, vocab, vocab), 3, vocab, Int32Array.of(0, vocab - 1));
        }
    });

    it("an id outside the vocabulary has log-prob -Infinity", () => {
        const out = replay.extract(randomRows(1, 100, 5), 1, 100, Int32Array.of(-1, 100, 5));
        assert.equal(out.reflection[0], Number.NEGATIVE_INFINITY);
        assert.equal(out.reflection[1], Number.NEGATIVE_INFINITY);
        assert.ok(Number.isFinite(out.reflection[2]));
    });

    it("NaN anywhere: the row is invalid with the first NaN's index, as on the CPU (NAN_LOGITS)", () => {
        const vocab = 1000;
        const ids = Int32Array.of(0, 3, 17, 500, 999);
        for (const at of [0, 1, 31, 32, 255, 256, 511, 744, 999]) {
            const logits = randomRows(2, vocab, at + 3);
            logits[vocab + 100] = 50;
            logits[vocab + at] = Number.NaN;
            logits[vocab + ((at + 517) % vocab)] = Number.NaN; // a second NaN, later or in another thread
            const out = replay.extract(logits, 2, vocab, ids);
            assert.equal(out.status[0], STATUS.ok);
            assert.equal(out.status[1], STATUS.nan, `NaN at ${at}`);
            assert.equal(out.badIndex[1], Math.min(at, (at + 517) % vocab), "the first NaN");
            assert.equal(out.argmax[1], -1);
            assert.ok(Number.isNaN(out.logSumExp[1]) && Number.isNaN(out.argmaxLogprob[1]));
            for (let k = 0; k < ids.length; k++) assert.ok(Number.isNaN(out.reflection[ids.length + k]));
            // The CPU kernel refuses the same row, naming the same index.
            assert.throws(() => extractWith(addon, logits, 2, vocab, ids, {isa: "scalar"}),
                new RegExp(`row 1\\b.*index ${Math.min(at, (at + 517) % vocab)}\\b`));
        }
    });

    it("+Infinity: k of them share the probability (-log k), every other token -Infinity; the first is the argmax", () => {
        const vocab = 1000;
        const ids = Int32Array.of(0, 3, 17, 500, 999);
        for (const infAt of [[17], [3, 999], [0, 17, 500], [998], [260, 4]]) {
            const logits = randomRows(1, vocab, 9);
            for (const at of infAt) logits[at] = Number.POSITIVE_INFINITY;
            logits[1] = Number.NEGATIVE_INFINITY;
            const out = replay.extract(logits, 1, vocab, ids);
            const cpu = extractWith(addon, logits, 1, vocab, ids, {isa: "scalar"});
            const k = infAt.length;
            assert.equal(out.status[0], STATUS.ok);
            assert.equal(out.argmax[0], Math.min(...infAt));
            assert.equal(out.argmax[0], cpu.argmax[0]);
            assert.equal(out.logSumExp[0], Number.POSITIVE_INFINITY);
            assert.ok(Math.abs(out.argmaxLogprob[0] - -Math.log(k)) < 1e-7);
            ids.forEach((id, j) => {
                const expected = infAt.includes(id) ? -Math.log(k) : Number.NEGATIVE_INFINITY;
                assert.ok(out.reflection[j] === expected || Math.abs(out.reflection[j] - expected) < 1e-7, `id ${id}`);
                assert.equal(out.reflection[j], cpu.reflection[j], `id ${id}: same value as the CPU kernel`);
            });
        }
    });

    it("-Infinity entries are impossible tokens; a row of only -Infinity is invalid", () => {
        const vocab = 1000;
        const ids = Int32Array.of(0, 3, 17, 500, 999);
        const logits = randomRows(2, vocab, 21);
        for (let i = 0; i < vocab; i += 3) logits[i] = Number.NEGATIVE_INFINITY;
        logits.fill(Number.NEGATIVE_INFINITY, vocab, 2 * vocab);
        const out = replay.extract(logits, 2, vocab, ids);
        const expected = referenceRow(Float32Array.from(logits.subarray(0, vocab), (x) => (x === Number.NEGATIVE_INFINITY ? -1e30 : x)), ids);
        assert.equal(out.status[0], STATUS.ok);
        assert.equal(out.argmax[0], expected.argmax);
        ids.forEach((id, j) => {
            if (logits[id] === Number.NEGATIVE_INFINITY) assert.equal(out.reflection[j], Number.NEGATIVE_INFINITY);
            else assert.ok(Math.abs(out.reflection[j] - expected.logprobs[j]) <= TOLERANCE);
        });
        assert.equal(out.status[1], STATUS.noFinite);
        assert.equal(out.argmax[1], -1);
    });

    describe("segment scoring (critique_math.h)", () => {
        const ids = Array.from({length: 15}, (_, i) => 32000 + i);
        const weights = {relevance: 1, support: 1, utility: 0.5, useSequenceScore: true, referenceLongFormUtility: false};

        function pack(candidates: OracleCandidate[]) {
            const offsets = new Int32Array(candidates.length + 1);
            candidates.forEach((c, i) => (offsets[i + 1] = offsets[i] + c.tokens.length));
            return {
                offsets, tokens: Int32Array.from(candidates.flatMap((c) => c.tokens)),
                logprobs: Float32Array.from(candidates.flatMap((c) => c.logprobs)),
                reflection: Float32Array.from(candidates.flatMap((c) => c.reflection.flat()))
            };
        }

        it("random candidates (log-probs down to -300) against the TypeScript oracle and the CPU scorer", () => {
            const next = mulberry32(42);
            const candidates: OracleCandidate[] = Array.from({length: 200}, (_, i) => {
                const spread = i % 3 === 0 ? 300 : 8;
                const n = i % 17 === 0 ? 0 : 1 + Math.floor(next() * 12);
                const tokens = Array.from({length: n}, () => (next() < 0.3 ? ids[Math.floor(next() * 15)] : Math.floor(next() * 32000)));
                return {tokens, logprobs: tokens.map(() => Math.fround(-next() * spread)),
                    reflection: tokens.map(() => Array.from({length: 15}, () => Math.fround(-next() * spread)))};
            });
            const p = pack(candidates);
            const host = replay.score(p.offsets, p.tokens, p.logprobs, p.reflection, Int32Array.from(ids), weights);
            const cpu = addon.scoreSegments(p.offsets, p.tokens, p.logprobs, p.reflection, Int32Array.from(ids), weights);
            candidates.forEach((c, i) => {
                const expected = oracleScore(c, ids);
                const got = {score: host[i * 5], relevance: host[i * 5 + 1], support: host[i * 5 + 2], utility: host[i * 5 + 3], seq: host[i * 5 + 4]};
                for (const key of ["score", "relevance", "support", "utility", "seq"] as const) {
                    const want = expected[key];
                    // The oracle's plain exp() underflows to 0/0 below about -745; the shifted form does not.
                    if (!Number.isFinite(want)) continue;
                    assert.ok(Math.abs(got[key] - want) <= 1e-9 * Math.max(1, Math.abs(want)), `candidate ${i} ${key}: ${got[key]} vs ${want}`);
                }
                for (let k = 0; k < 5; k++) assert.equal(host[i * 5 + k], cpu[i * 5 + k], `candidate ${i} field ${k}: the CPU scorer runs the same code`);
            });
        });

        it("log-probs below exp's range give the shifted answer, not 0/0", () => {
            const c = {tokens: [ids[12], ids[7]], logprobs: [-1, -1], reflection: [Array(15).fill(-2000), Array(15).fill(-2000)]};
            const p = pack([c]);
            const s = replay.score(p.offsets, p.tokens, p.logprobs, p.reflection, Int32Array.from(ids), weights);
            assert.equal(s[1], 0.5, "relevance: even split");
            assert.equal(s[2], 0.5, "support: (1 + 0.5) / 3");
            assert.equal(s[3], 0, "utility: symmetric weights");
            assert.ok(Number.isFinite(s[0]));
        });
    });
});
