// Exact search and the search calibration: the flat vectors' exact top k against a plain
// TypeScript brute force (in memory and scanned in chunks), the held-out reservoir sample, the
// recall arithmetic and the choice rule on hand-made measurements, and whole builds: the plan in
// the manifest follows from its own measurements, an exact-search index answers like brute force
// over the embedder's vectors, and the calibrated recall holds on fresh queries.
import {rejectsWith} from "../test-support/assertions.js";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {mulberry32} from "../test-support/random.js";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {FlatVectors, FlatVectorWriter, flatVectorRows} from "../lib/retrieval/ExactSearch.js";
import {HeldOutSample} from "../lib/retrieval/HeldOutSample.js";
import {INDEX_FILES, readManifest} from "../lib/retrieval/IndexManifest.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {chooseSearchPlan, recallEstimate, recallPerQuery, type CalibrationReport} from "../lib/retrieval/SearchCalibration.js";
import {VectorIndex, type VectorMatches} from "../lib/retrieval/VectorIndex.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-calibration-"));
after(() => fs.rmSync(dir, {recursive: true, force: true}));

function unitRows(rows: number, dims: number, seed: number): Float32Array {
    const next = mulberry32(seed);
    const v = Float32Array.from({length: rows * dims}, () => next() * 2 - 1);
    for (let r = 0; r < rows; r++) {
        let sum = 0;
        for (let i = 0; i < dims; i++) sum += v[r * dims + i] ** 2;
        for (let i = 0; i < dims; i++) v[r * dims + i] /= Math.sqrt(sum);
    }
    return v;
}

/** The oracle: cosine distance to every row, sorted; keys are row + firstKey. */
function bruteForce(data: Float32Array, queries: Float32Array, dims: number, k: number, firstKey = 1): {keys: bigint[], distances: number[]}[] {
    const rows = data.length / dims;
    return Array.from({length: queries.length / dims}, (_, q) => {
        const scored = Array.from({length: rows}, (_, r) => {
            let dot = 0;
            let nq = 0;
            let nr = 0;
            for (let i = 0; i < dims; i++) {
                dot += queries[q * dims + i] * data[r * dims + i];
                nq += queries[q * dims + i] ** 2;
                nr += data[r * dims + i] ** 2;
            }
            return {key: BigInt(r + firstKey), distance: 1 - dot / Math.sqrt(nq * nr)};
        }).sort((a, b) => a.distance - b.distance).slice(0, k);
        return {keys: scored.map((s) => s.key), distances: scored.map((s) => s.distance)};
    });
}

function assertMatchesOracle(found: {keys: BigUint64Array, distances: Float32Array, counts: Uint32Array}, k: number,
    oracle: {keys: bigint[], distances: number[]}[]): void {
    oracle.forEach((expected, q) => {
        assert.equal(found.counts[q], expected.keys.length, `query ${q}: count`);
        assert.deepEqual(Array.from(found.keys.subarray(q * k, q * k + expected.keys.length)), expected.keys, `query ${q}: keys`);
        expected.distances.forEach((d, i) => assert.ok(Math.abs(found.distances[q * k + i] - d) < 1e-5, `query ${q} rank ${i}: ${found.distances[q * k + i]} vs ${d}`));
    });
}

function writeFlat(file: string, rows: Float32Array, dims: number): string {
    const writer = new FlatVectorWriter(file, dims);
    // In two appends, as a build writes batch after batch.
    const half = Math.floor(rows.length / dims / 2) * dims;
    writer.append(rows.subarray(0, half));
    writer.append(rows.subarray(half));
    assert.equal(writer.rows, rows.length / dims);
    writer.close();
    writer.close(); // idempotent
    return file;
}

describe("exact search over flat vectors", () => {
    const dims = 32;
    const data = unitRows(2000, dims, 1);
    const queries = unitRows(25, dims, 2);
    const k = 10;
    let file: string;
    before(() => {
        file = writeFlat(path.join(dir, "flat.f32"), data, dims);
    });

    it("the exact top k equals a TypeScript brute force, in memory and scanned in 7 chunks", () => {
        const oracle = bruteForce(data, queries, dims, k, 1);
        assert.equal(flatVectorRows(file, dims), 2000);
        const loaded = FlatVectors.open(file, dims, {load: true, firstKey: 1});
        const chunked = FlatVectors.open(file, dims, {load: false, firstKey: 1, chunkBytes: 4 * dims * 300});
        assert.ok(loaded.loaded && !chunked.loaded);
        assertMatchesOracle(loaded.search(queries, k, 2), k, oracle);
        assertMatchesOracle(chunked.search(queries, k, 2), k, oracle);
        // One query (USearch answers a single query in another shape), and keys from another first key.
        const one = bruteForce(data, queries.subarray(0, dims), dims, 3, 101);
        assertMatchesOracle(FlatVectors.open(file, dims, {load: false, firstKey: 101, chunkBytes: 4 * dims * 999}).search(queries.subarray(0, dims), 3, 1), 3, one);
    });

    it("asking for more than there are rows fills what exists; through the index worker it is the same", async () => {
        const small = writeFlat(path.join(dir, "small.f32"), data.subarray(0, 5 * dims), dims);
        const found = FlatVectors.open(small, dims, {load: false, firstKey: 1, chunkBytes: 4 * dims * 2}).search(queries, k, 1);
        assertMatchesOracle(found, k, bruteForce(data.subarray(0, 5 * dims), queries, dims, k, 1));
        const index = await VectorIndex.create({dimensions: dims, dtype: "f32", connectivity: 16, expansionAdd: 64, expansionSearch: 64});
        try {
            await assert.rejects(index.search(queries, k, {exact: true}), rejectsWith("INVALID_STATE", /attachExact/));
            assert.equal(await index.attachExact(file, {load: true}), 2000);
            const viaWorker = await index.search(queries, k, {exact: true});
            assertMatchesOracle(viaWorker, k, bruteForce(data, queries, dims, k, 1));
        } finally {
            await index.close();
        }
    });

    it("a file that is not whole rows is INDEX_CORRUPT naming it; a missing one INDEX_NOT_FOUND", () => {
        const broken = path.join(dir, "broken.f32");
        fs.writeFileSync(broken, Buffer.alloc(4 * dims + 6));
        assert.throws(() => flatVectorRows(broken, dims), rejectsWith("INDEX_CORRUPT", /broken\.f32 holds 134 bytes/));
        assert.throws(() => FlatVectors.open(path.join(dir, "none.f32"), dims, {load: true, firstKey: 1}), rejectsWith("INDEX_NOT_FOUND"));
    });
});

describe("held-out sample", () => {
    it("holds out a uniform sample and passes every other key on exactly once, the same on every run", () => {
        const dims = 2;
        const run = () => {
            const sample = new HeldOutSample(100, dims, 7);
            const passed: bigint[] = [];
            for (let from = 1; from <= 10_000; from += 256) {
                const n = Math.min(256, 10_001 - from);
                const keys = BigUint64Array.from({length: n}, (_, i) => BigInt(from + i));
                // Each row carries its key, so rows can be checked to travel with their keys.
                const rows = Float32Array.from({length: n * dims}, (_, j) => from + Math.floor(j / dims));
                const out = sample.offer(keys, rows);
                out.keys.forEach((key, i) => assert.equal(out.rows[i * dims], Number(key)));
                passed.push(...out.keys);
            }
            return {passed, held: sample.sample()};
        };
        const {passed, held} = run();
        assert.equal(held.keys.length, 100);
        held.keys.forEach((key, i) => assert.equal(held.rows[i * dims + 1], Number(key)));
        const all = [...passed, ...held.keys].map(Number).sort((a, b) => a - b);
        assert.deepEqual(all, Array.from({length: 10_000}, (_, i) => i + 1));
        // Uniform over the stream, not the first 100: the mean key of 100 uniform draws from
        // 1..10000 is 5000 with a standard deviation near 290.
        const mean = held.keys.reduce((a, b) => a + Number(b), 0) / 100;
        assert.ok(mean > 4000 && mean < 6000, `mean held-out key ${mean}`);
        assert.ok(held.keys.some((k) => k > 9000n) && held.keys.some((k) => k < 1000n));
        assert.deepEqual(run().held.keys, held.keys);
    });

    it("with no capacity, passes every batch through unchanged", () => {
        const sample = new HeldOutSample(0, 3);
        const keys = BigUint64Array.of(1n, 2n);
        const rows = new Float32Array(6);
        const out = sample.offer(keys, rows);
        assert.equal(out.keys, keys);
        assert.equal(out.rows, rows);
        assert.equal(sample.sample().keys.length, 0);
    });
});

describe("recall and the choice of search", () => {
    const matches = (k: number, rows: number[][]): VectorMatches => ({
        k, keys: BigUint64Array.from(rows.flatMap((r) => [...r, ...Array(k - r.length).fill(0)]), BigInt),
        distances: new Float32Array(rows.length * k), counts: Uint32Array.from(rows, (r) => r.length)
    });

    it("recall per query, its mean and a lower bound two standard errors below", () => {
        const truth = matches(3, [[1, 2, 3], [4, 5, 6], [7, 8], []]);
        const found = matches(3, [[1, 9, 3], [7, 8, 9], [8, 7, 1], [5]]);
        assert.deepEqual(recallPerQuery(found, truth, 3), [2 / 3, 0, 1, 1]);
        // Only the first k found count.
        assert.deepEqual(recallPerQuery(found, truth, 1), [1, 0, 0, 1]);
        // mean 0.75, sample variance ((0.25)^2 * 2) / 1 = 0.125, standard error sqrt(0.125 / 2) = 0.25
        const estimate = recallEstimate([1, 0.5]);
        assert.equal(estimate.recall, 0.75);
        assert.ok(Math.abs(estimate.recallLowerBound - 0.25) < 1e-12);
        assert.deepEqual(recallEstimate([0.9, 0.9, 0.9]), {recall: 0.9, recallLowerBound: 0.9});
    });

    const report = (hnsw: [number, number, number, number][], exactUs: number | undefined): CalibrationReport => ({
        k: 10, queries: 200, targetRecall: 0.95,
        exact: {candidate: exactUs != null, vectorBytes: 1000, memoryLimit: exactUs != null ? 2000 : 500, usPerQuery: exactUs},
        hnsw: hnsw.map(([ef, recall, lower, us]) => ({expansionSearch: ef, recall, recallLowerBound: lower, usPerQuery: us}))
    });

    it("takes the cheapest search whose recall lower bound reaches the target", () => {
        const pick = (r: CalibrationReport) => {
            const plan = chooseSearchPlan(r);
            return [plan.mode, plan.expansionSearch, plan.recall, plan.meetsTarget];
        };
        // ef 32 meets the target and costs less than exact search.
        assert.deepEqual(pick(report([[16, 0.8, 0.78, 100], [32, 0.97, 0.96, 150]], 900)), ["hnsw", 32, 0.97, true]);
        // ef 32's mean is above the target but its lower bound is not: exact search (recall 1).
        assert.deepEqual(pick(report([[16, 0.8, 0.78, 100], [32, 0.955, 0.94, 150]], 900)), ["exact", 32, 1, true]);
        // Exact search cheaper than the HNSW setting that meets the target.
        assert.deepEqual(pick(report([[16, 0.9, 0.88, 100], [32, 0.97, 0.96, 1200]], 900)), ["exact", 32, 1, true]);
        // Exact search too large for the memory budget and nothing meets the target: the best recall, flagged.
        assert.deepEqual(pick(report([[16, 0.6, 0.55, 100], [32, 0.8, 0.77, 150], [64, 0.79, 0.75, 120]], undefined)), ["hnsw", 32, 0.8, false]);
    });
});

describe("calibrated indexes", () => {
    const passages = generatedPassages(1500, 31);
    let corpus: string;
    before(() => {
        corpus = writeJsonl(path.join(dir, "corpus.jsonl"), passages);
    });

    it("the manifest's plan is the choice its own measurements imply; the held-out passages are in the index", async () => {
        const out = path.join(dir, "calibrated");
        const summary = await PassageIndex.build({corpus, out, keepVectors: true, calibration: {queries: 150}});
        const manifest = readManifest(out);
        assert.deepEqual(manifest, summary.manifest);
        const plan = manifest.search!;
        const report = plan.calibration!;
        assert.equal(report.queries, 150);
        assert.equal(report.k, 10);
        assert.ok(report.exact.candidate && report.exact.usPerQuery! > 0);
        assert.equal(report.exact.vectorBytes, 1500 * 384 * 4);
        // ef doubles from 16; every step but the last is below the target (the ladder stops at the first that meets it
        // or costs more than exact search).
        report.hnsw.forEach((m, i) => {
            assert.equal(m.expansionSearch, 16 * 2 ** i);
            assert.ok(m.recall >= 0 && m.recall <= 1 && m.recallLowerBound <= m.recall);
            if (i < report.hnsw.length - 1) assert.ok(m.recallLowerBound < report.targetRecall && m.usPerQuery < report.exact.usPerQuery!);
        });
        const {calibration: _, ...expected} = chooseSearchPlan(report);
        const {calibration: __, ...actual} = plan;
        assert.deepEqual(actual, expected);
        assert.equal(manifest.vectors.expansionSearch, plan.expansionSearch);
        assert.equal(manifest.exactVectors, INDEX_FILES.exactVectors);
        assert.equal(flatVectorRows(path.join(out, INDEX_FILES.exactVectors), 384), 1500);

        // All 1500 vectors are in the graph (open() checks the count), and HNSW at the calibrated ef
        // reaches about the calibrated recall against exact search on 200 fresh queries of the same kind.
        const fresh = generatedPassages(200, 97).map((p) => `${p.title} ${p.text}`);
        const hnsw = await PassageIndex.open(out, {mode: "hnsw"});
        const exact = await PassageIndex.open(out, {mode: "exact"});
        try {
            assert.deepEqual(hnsw.searchMode, {mode: "hnsw", expansionSearch: plan.expansionSearch});
            assert.equal(exact.searchMode.mode, "exact");
            const [a, b] = [await hnsw.search(fresh, 10), await exact.search(fresh, 10)];
            let hits = 0;
            a.forEach((hits_, q) => {
                const truth = new Set(b[q].map((h) => h.key));
                hits += hits_.filter((h) => truth.has(h.key)).length;
            });
            const recall = hits / (200 * 10);
            assert.ok(recall >= Math.min(plan.recall!, report.targetRecall) - 0.03, `fresh-query recall ${recall} vs calibrated ${plan.recall}`);
        } finally {
            await hnsw.close();
            await exact.close();
        }
    });

    it("when only exact search reaches the target it becomes the default and answers like a brute force over the embedder's vectors", async () => {
        const out = path.join(dir, "exact");
        // A recall of 1 at ef 16 is out of reach on these vectors (f16 storage alone reorders near ties).
        await PassageIndex.build({corpus, out, calibration: {queries: 100, targetRecall: 1, maxExpansion: 16}});
        const manifest = readManifest(out);
        assert.equal(manifest.search?.mode, "exact");
        assert.equal(manifest.search?.meetsTarget, true);
        assert.ok(manifest.search!.calibration!.hnsw[0].recallLowerBound < 1);
        assert.ok(fs.existsSync(path.join(out, INDEX_FILES.exactVectors)), "exact search keeps vectors.f32");
        const index = await PassageIndex.open(out);
        try {
            assert.equal(index.searchMode.mode, "exact");
            const vectors = await index.embedder.embedPassages(passages);
            const queries = passages.slice(0, 20).map((p) => `${p.text.split(" ").slice(0, 12).join(" ")}`);
            const queryVectors = await index.embedder.embedQueries(queries);
            const oracle = bruteForce(vectors, queryVectors, 384, 5, 1);
            const found = await index.search(queries, 5);
            found.forEach((hits, q) => {
                assert.deepEqual(hits.map((h) => BigInt(h.key)), oracle[q].keys, `query ${q}`);
                hits.forEach((h, i) => assert.ok(Math.abs(h.score - (1 - oracle[q].distances[i])) < 1e-5));
                assert.equal(hits[0].id, passages[Number(oracle[q].keys[0]) - 1].id);
            });
        } finally {
            await index.close();
        }
    });

    it("exact search on an index without its vectors is NO_EXACT_VECTORS; a truncated vectors.f32 is INDEX_CORRUPT", async () => {
        const out = path.join(dir, "plain");
        await PassageIndex.build({corpus, out, calibration: {queries: 0}});
        const manifest = readManifest(out);
        assert.equal(manifest.search?.calibration, undefined);
        assert.ok(!fs.existsSync(path.join(out, INDEX_FILES.exactVectors)));
        await assert.rejects(PassageIndex.open(out, {mode: "exact"}), rejectsWith("NO_EXACT_VECTORS", /--keep-vectors/));

        const exact = path.join(dir, "exact");
        const file = path.join(exact, INDEX_FILES.exactVectors);
        fs.truncateSync(file, fs.statSync(file).size - 384 * 4);
        await assert.rejects(PassageIndex.open(exact), rejectsWith("INDEX_CORRUPT", /vectors\.f32 holds 1499 vectors but the manifest says 1500/));
        fs.truncateSync(file, fs.statSync(file).size - 3);
        await assert.rejects(PassageIndex.open(exact), rejectsWith("INDEX_CORRUPT", /not a whole number/));
    });

    it("bad calibration options are refused before the build starts", async () => {
        const out = path.join(dir, "refused");
        await assert.rejects(PassageIndex.build({corpus, out, calibration: {targetRecall: 1.5}}), rejectsWith("INVALID_ARGUMENT", /targetRecall/));
        await assert.rejects(PassageIndex.build({corpus, out, calibration: {queries: -1}}), rejectsWith("INVALID_ARGUMENT", /calibration queries/));
        assert.ok(!fs.existsSync(out) && !fs.existsSync(path.join(dir, ".refused.building")));
    });
});
