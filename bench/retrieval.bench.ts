// The vector index against exact search, in one process and one run:
//   - data: 100k random and 100k clustered unit vectors of 384 dimensions, plus held-out queries;
//   - exact: USearch's exactSearch (multithreaded brute force, f32) gives the true top 10 and the
//     baseline QPS;
//   - ours: VectorIndex (USearch HNSW on its worker thread, the library's defaults: M 16, ef_add
//     128) built for f16 and i8, then searched at several ef: recall@10, QPS, build vectors/s,
//     and bytes per vector of the saved file;
//   - the search calibration (what `index build` runs): 200 more queries of the same kind, an ef
//     ladder against exact search, the cheapest search meeting recall 0.95 chosen; the chosen
//     search is then measured on the 300 evaluation queries like the rest;
//   - the arithmetic for the reference corpus (21M x 768) from the measured bytes per vector.
// Timings only feed ratios and the report; nothing here asserts a timing. Recall is reported
// against its target, not asserted either (the random set is the known worst case for HNSW).
import {mulberry32} from "../test-support/random.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {Bench} from "tinybench";
import usearch from "usearch";
import {FlatVectorWriter} from "../lib/retrieval/ExactSearch.js";
import {calibrateSearch, chooseSearchPlan, type SearchPlan} from "../lib/retrieval/SearchCalibration.js";
import {DEFAULT_VECTOR_INDEX, VectorIndex, type VectorDtype} from "../lib/retrieval/VectorIndex.js";
import {environment, measurement, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";

const DIMS = 384;
const COUNT = 100_000;
const QUERIES = 300;
/** Queries the calibration uses (separate from the evaluation queries, as a build's held-out passages are). */
const CALIBRATION_QUERIES = 200;
const K = 10;
const EF: readonly number[] = [64, 128, 512];
/**
 * Which storage types are built for which set. i8 is skipped on the random set to keep the run
 * under three minutes on two cores: its random build is the second slowest step and would only
 * repeat that random vectors have no neighbourhoods to find (bytes per vector do not depend on the
 * data: the graph overhead came out identical on both sets).
 */
const PLAN: readonly {dataset: Dataset["name"], dtypes: readonly VectorDtype[]}[] = [
    {dataset: "random", dtypes: ["f16"]},
    {dataset: "clustered", dtypes: ["f16", "i8"]}
];
const THREADS = os.availableParallelism();
const SEARCH_BENCH = {time: 0, iterations: 3, warmupTime: 0, warmupIterations: 1};
const REFERENCE = {passages: 21_015_324, dims: 768};

interface Dataset {
    name: "random" | "clustered";
    description: string;
    base: Float32Array;
    queries: Float32Array;
    calibration: Float32Array;
}

interface Figures {
    /** dataset.dtype -> bytes of the saved index per vector */
    bytesPerVector: Record<string, number>;
    /** dataset.dtype.efN -> recall@10 */
    recall: Record<string, number>;
    /** dataset.dtype -> vectors added per second */
    buildRate: Record<string, number>;
    /** dataset -> the calibrated plan (f16 index) */
    plans: Record<string, SearchPlan>;
}

export async function run(): Promise<BenchResult> {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-bench-retrieval-"));
    const measurements: Measurement[] = [];
    const figures: Figures = {bytesPerVector: {}, recall: {}, buildRate: {}, plans: {}};
    try {
        for (const {dataset: name, dtypes} of PLAN) {
            const dataset = name === "random" ? randomDataset(1) : clusteredDataset(2);
            const truth = exactTopK(dataset, measurements);
            for (const dtype of dtypes) await benchIndex(dataset, dtype, truth, work, measurements, figures);
        }
    } finally {
        fs.rmSync(work, {recursive: true, force: true});
    }
    const result: BenchResult & {figures: Figures} = {
        name: "retrieval",
        title: "Retrieval: USearch HNSW (f16, i8) and calibrated search vs exact search, 100k x 384",
        environment: environment("n/a (USearch picks its own SIMD kernels)"),
        measurements,
        comparisons: compare(measurements, figures),
        notes: notes(figures),
        figures
    };
    writeResult(result);
    return result;
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/** Uniform in (0, 1): mulberry32 shifted by half a step, so log() never sees 0. */
function uniform(seed: number): () => number {
    const next = mulberry32(seed);
    return () => next() + 0.5 / 4294967296;
}

/** Standard normal samples (Box-Muller) from a seeded uniform generator. */
function gaussian(next: () => number): () => number {
    return () => Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
}

function normalise(v: Float32Array): Float32Array {
    for (let r = 0; r < v.length; r += DIMS) {
        let sum = 0;
        for (let i = r; i < r + DIMS; i++) sum += v[i] * v[i];
        const scale = 1 / Math.sqrt(sum);
        for (let i = r; i < r + DIMS; i++) v[i] *= scale;
    }
    return v;
}

/** Isotropic Gaussian directions: no structure at all, the worst case for any graph index. */
function randomDataset(seed: number): Dataset {
    const next = gaussian(uniform(seed));
    return {
        name: "random",
        description: "isotropic Gaussian directions (unit vectors, no structure)",
        base: normalise(Float32Array.from({length: COUNT * DIMS}, next)),
        queries: normalise(Float32Array.from({length: QUERIES * DIMS}, next)),
        calibration: normalise(Float32Array.from({length: CALIBRATION_QUERIES * DIMS}, next))
    };
}

/**
 * Structured like real embeddings: 1000 cluster centres, and within a cluster, variation along a
 * 24-dimensional subspace plus a little isotropic noise, so neighbourhoods are low-dimensional as
 * with trained encoders (whose intrinsic dimension is far below their width).
 */
function clusteredDataset(seed: number): Dataset {
    const pick = uniform(seed);
    const next = gaussian(uniform(seed + 1));
    const clusters = 1000;
    const rank = 24;
    const centres = Float32Array.from({length: clusters * DIMS}, next);
    const basis = Float32Array.from({length: rank * DIMS}, () => next() / Math.sqrt(rank));
    const draw = (rows: number) => {
        const out = new Float32Array(rows * DIMS);
        const z = new Float32Array(rank);
        for (let r = 0; r < rows; r++) {
            const c = Math.floor(pick() * clusters);
            for (let j = 0; j < rank; j++) z[j] = next() * 0.6;
            for (let i = 0; i < DIMS; i++) {
                let value = centres[c * DIMS + i] + 0.05 * next();
                for (let j = 0; j < rank; j++) value += z[j] * basis[j * DIMS + i];
                out[r * DIMS + i] = value;
            }
        }
        return normalise(out);
    };
    return {
        name: "clustered",
        description: "1000 clusters, within-cluster variation in a 24-dim subspace plus small isotropic noise (unit vectors)",
        base: draw(COUNT),
        queries: draw(QUERIES),
        calibration: draw(CALIBRATION_QUERIES)
    };
}

// ---------------------------------------------------------------------------------------------
// Exact search (ground truth and baseline)
// ---------------------------------------------------------------------------------------------

function exactTopK(dataset: Dataset, measurements: Measurement[]): Set<bigint>[] {
    const started = performance.now();
    const found = usearch.exactSearch(dataset.base, dataset.queries, DIMS, K, usearch.MetricKind.Cos, THREADS) as unknown as
        {keys: BigUint64Array};
    const us = (performance.now() - started) * 1000 / QUERIES;
    measurements.push(single(`${dataset.name}.exact`, `${dataset.name}: exact search (USearch exactSearch, f32, ${THREADS} threads)`, "query", us));
    // Keys are row numbers; the HNSW index uses row + 1 (key 0 is fine for USearch, but not for SQLite rowids).
    return Array.from({length: QUERIES}, (_, q) => new Set(Array.from(found.keys.subarray(q * K, q * K + K), (key) => key + 1n)));
}

/** A measurement taken once (a build of 100k vectors is too long to repeat). */
function single(id: string, label: string, unit: string, us: number): Measurement {
    return {id, label, unit, medianUs: us, meanUs: us, rmePercent: 0, samples: 1};
}

// ---------------------------------------------------------------------------------------------
// HNSW: build, size, recall and QPS per ef
// ---------------------------------------------------------------------------------------------

async function benchIndex(dataset: Dataset, dtype: VectorDtype, truth: Set<bigint>[], work: string,
    measurements: Measurement[], figures: Figures): Promise<void> {
    const tag = `${dataset.name}.${dtype}`;
    const config = {...DEFAULT_VECTOR_INDEX, dimensions: DIMS, dtype};
    const file = path.join(work, `${tag}.usearch`);
    const index = await VectorIndex.create(config, {threads: THREADS});
    const started = performance.now();
    const chunk = 10_000;
    for (let from = 0; from < COUNT; from += chunk) {
        const rows = Math.min(chunk, COUNT - from);
        const keys = BigUint64Array.from({length: rows}, (_, i) => BigInt(from + i + 1));
        await index.add(keys, dataset.base.slice(from * DIMS, (from + rows) * DIMS), {transfer: true});
    }
    const buildUs = (performance.now() - started) * 1000 / COUNT;
    measurements.push(single(`${tag}.build`, `${dataset.name}: HNSW build, ${dtype} (M ${config.connectivity}, ef_add ${config.expansionAdd}, ${THREADS} threads)`,
        "vector", buildUs));
    figures.buildRate[tag] = 1e6 / buildUs;
    await index.save(file);
    await index.close();
    figures.bytesPerVector[tag] = fs.statSync(file).size / COUNT;

    for (const ef of EF) {
        const viewed = await VectorIndex.open(file, {...config, expansionSearch: ef}, {view: true, threads: THREADS});
        try {
            const found = await viewed.search(dataset.queries, K);
            let hits = 0;
            for (let q = 0; q < QUERIES; q++) {
                for (let i = 0; i < found.counts[q]; i++) if (truth[q].has(found.keys[q * K + i])) hits++;
            }
            figures.recall[`${tag}.ef${ef}`] = hits / (QUERIES * K);
            const bench = new Bench({name: `${tag} ef ${ef}`, ...SEARCH_BENCH, throws: true});
            const name = `${dataset.name}: HNSW search, ${dtype}, ef ${ef} (batches of ${QUERIES}, memory-mapped)`;
            bench.add(name, async () => {
                const t0 = performance.now();
                await viewed.search(dataset.queries, K);
                const ms = performance.now() - t0;
                return {overriddenDuration: ms / QUERIES, overriddenIterationCost: ms};
            });
            await bench.run();
            measurements.push(measurement(bench.getTask(name)!, `${tag}.ef${ef}`, "query"));
        } finally {
            await viewed.close();
        }
    }
    if (dtype === "f16") await benchCalibrated(dataset, config, file, truth, work, measurements, figures);
}

/**
 * The calibration `index build` runs, on this index: its choice, then the chosen search measured
 * on the evaluation queries (which the calibration never saw).
 */
async function benchCalibrated(dataset: Dataset, config: typeof DEFAULT_VECTOR_INDEX & {dimensions: number}, file: string,
    truth: Set<bigint>[], work: string, measurements: Measurement[], figures: Figures): Promise<void> {
    const flatFile = path.join(work, `${dataset.name}.f32`);
    const writer = new FlatVectorWriter(flatFile, DIMS);
    writer.append(dataset.base);
    writer.close();
    const report = await calibrateSearch({
        indexFile: file, config, flatFile, heldOut: dataset.calibration, heldOutKeys: new BigUint64Array(0), count: COUNT, threads: THREADS
    });
    const plan = chooseSearchPlan(report);
    figures.plans[dataset.name] = plan;
    const index = await VectorIndex.open(file, {...config, expansionSearch: plan.expansionSearch}, {view: true, threads: THREADS});
    try {
        const exact = plan.mode === "exact";
        if (exact) await index.attachExact(flatFile, {load: true});
        const found = await index.search(dataset.queries, K, {exact});
        let hits = 0;
        for (let q = 0; q < QUERIES; q++) {
            for (let i = 0; i < found.counts[q]; i++) if (truth[q].has(found.keys[q * K + i])) hits++;
        }
        figures.recall[`${dataset.name}.auto`] = hits / (QUERIES * K);
        const bench = new Bench({name: `${dataset.name} calibrated`, ...SEARCH_BENCH, throws: true});
        const name = `${dataset.name}: calibrated search (${planLabel(plan)})`;
        bench.add(name, async () => {
            const t0 = performance.now();
            await index.search(dataset.queries, K, {exact});
            const ms = performance.now() - t0;
            return {overriddenDuration: ms / QUERIES, overriddenIterationCost: ms};
        });
        await bench.run();
        measurements.push(measurement(bench.getTask(name)!, `${dataset.name}.auto`, "query"));
    } finally {
        await index.close();
    }
}

function planLabel(plan: SearchPlan): string {
    return plan.mode === "exact" ? "chose exact search over the in-memory f32 vectors" : `chose HNSW f16 at ef ${plan.expansionSearch}`;
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

function byId(m: readonly Measurement[], id: string): number {
    const found = m.find((x) => x.id === id);
    if (found == null) throw new Error(`no measurement "${id}"`);
    return found.medianUs;
}

function compare(m: readonly Measurement[], f: Figures): Comparison[] {
    const out: Comparison[] = [];
    for (const {dataset, dtypes} of PLAN) {
        for (const dtype of dtypes) {
            for (const ef of EF) {
                const tag = `${dataset}.${dtype}.ef${ef}`;
                out.push({label: `${dataset}, ${dtype}, ef ${ef}: recall@10 (fraction of the exact top 10)`, value: f.recall[tag], unit: "x",
                    target: {kind: "min", value: 0.95}});
                out.push({label: `${dataset}, ${dtype}, ef ${ef}: QPS HNSW / QPS exact`, value: byId(m, `${dataset}.exact`) / byId(m, tag), unit: "x"});
            }
        }
    }
    for (const [dataset, plan] of Object.entries(f.plans)) {
        out.push({label: `${dataset}, calibrated (${planLabel(plan)}): recall@10 on the evaluation queries`, value: f.recall[`${dataset}.auto`],
            unit: "x", target: {kind: "min", value: 0.95}});
        out.push({label: `${dataset}, calibrated: QPS / QPS exact`, value: byId(m, `${dataset}.exact`) / byId(m, `${dataset}.auto`), unit: "x"});
    }
    out.push({label: "bytes per vector, i8 / f16 (clustered)", value: f.bytesPerVector["clustered.i8"] / f.bytesPerVector["clustered.f16"], unit: "x"});
    out.push({label: "build rate, i8 / f16 (clustered)", value: f.buildRate["clustered.i8"] / f.buildRate["clustered.f16"], unit: "x"});
    return out;
}

function gb(bytes: number): string {
    return `${(bytes / 1e9).toFixed(1)} GB`;
}

function notes(f: Figures): string[] {
    const lines: string[] = [
        `Vectors: ${COUNT} base and ${QUERIES} held-out queries per set, ${DIMS} dims, L2-normalised, cosine. random = isotropic ` +
        "Gaussian directions; clustered = 1000 cluster centres with variation in a 24-dim subspace plus small isotropic noise " +
        "(real embeddings have low intrinsic dimension; random ones have none).",
        `Index: the library defaults (connectivity ${DEFAULT_VECTOR_INDEX.connectivity}, expansion_add ${DEFAULT_VECTOR_INDEX.expansionAdd}, ` +
        `default expansion_search ${DEFAULT_VECTOR_INDEX.expansionSearch}), built through VectorIndex (USearch on a worker thread, ` +
        `${THREADS} USearch threads, 10k-vector batches), saved, then memory-mapped (view) for the searches.`,
        "Exact baseline: USearch's exactSearch, a multithreaded f32 brute force over the same vectors; its result is the ground truth. " +
        "Recall@10 = |HNSW top 10 ∩ exact top 10| / 10, averaged over the queries.",
        "Builds run once (one sample each); searches are timed by tinybench over whole batches, per query. i8 is built on the " +
        "clustered set only (runtime budget; see PLAN).",
        "random: in 384 isotropic dimensions all distances concentrate near the same value, so the exact top 10 is barely closer " +
        "than the rest and no graph index reaches it at a useful ef; recall there shows the worst case, not what embeddings get. " +
        "clustered i8: recall stops near 0.96 whatever the ef because i8 (USearch scales each unit vector to [-127, 127] and " +
        "truncates) reorders close neighbours against the f32 ground truth; f16 does not.",
        `Calibration (what \`selfrag index build\` does after adding the vectors; here on the f16 index with ${CALIBRATION_QUERIES} ` +
        "extra queries of the same kind): exact top 10 as ground truth, HNSW at ef 16, 32, 64, ... until the recall's lower bound " +
        "(mean - 2 standard errors) reaches 0.95 or HNSW costs more than exact search; the cheapest search meeting 0.95 wins. " +
        "The calibrated rows above are that choice measured on the 300 evaluation queries the calibration never saw.",
        ...Object.entries(f.plans).map(([dataset, plan]) => {
            const r = plan.calibration!;
            const ladder = r.hnsw.map((h) => `ef ${h.expansionSearch}: ${h.recall.toFixed(3)} at ${(h.usPerQuery / 1000).toFixed(2)} ms`).join("; ");
            return `  ${dataset}: ${ladder}; exact ${((r.exact.usPerQuery ?? NaN) / 1000).toFixed(2)} ms/query -> ${planLabel(plan)}`;
        }),
        "Bytes per vector = saved file size / vectors (vectors + HNSW graph + keys):"
    ];
    for (const [tag, bytes] of Object.entries(f.bytesPerVector)) {
        const dtype = tag.split(".")[1];
        const vectorBytes = DIMS * (dtype === "f16" ? 2 : dtype === "i8" ? 1 : 4);
        lines.push(`  ${tag}: ${bytes.toFixed(1)} bytes/vector = ${vectorBytes} of vector + ${(bytes - vectorBytes).toFixed(1)} of graph and keys; ` +
            `built at ${Math.round(f.buildRate[tag])} vectors/s`);
    }
    // Graph overhead per vector does not depend on the dimensions (it is M neighbours per level plus
    // the key), so the measured overhead carries over to 768 dims.
    const overheads = Object.entries(f.bytesPerVector).map(([tag, bytes]) => {
        const dtype = tag.split(".")[1];
        return bytes - DIMS * (dtype === "f16" ? 2 : dtype === "i8" ? 1 : 4);
    });
    const overhead = overheads.reduce((a, b) => a + b, 0) / overheads.length;
    const n = REFERENCE.passages;
    const d = REFERENCE.dims;
    const size = (bytesPerDim: number) => n * (d * bytesPerDim + overhead);
    lines.push(
        `The reference corpus (psgs_w100: ${n.toLocaleString("en-US")} passages, Contriever's ${d} dims), with the measured graph ` +
        `overhead of ${overhead.toFixed(0)} bytes/vector: f32 ${gb(size(4))} (flat f32 without a graph, as the reference's FAISS ` +
        `index: ${gb(n * d * 4)}), f16 ${gb(size(2))}, i8 ${gb(size(1))}. With view() these bytes are memory-mapped, not loaded: ` +
        "the resident set is the pages searches touch, so a machine with less RAM than the index still serves it (from the page " +
        "cache, slower when cold). The passages themselves (13 GB of TSV) sit in SQLite on disk, read per hit.",
        `Building it: at this run's clustered f16 rate (${Math.round(f.buildRate["clustered.f16"])} vectors/s at 100k x 384) the inserts alone ` +
        `would take ${(n / f.buildRate["clustered.f16"] / 3600).toFixed(1)} h, a lower bound: 768 dims cost about twice as much per distance ` +
        "and HNSW inserts slow down logarithmically with the index size; embedding 21M passages with a GGUF model costs more than that.",
        "Machines are shared and noisy: compare ratios and recall, not absolute times."
    );
    return lines;
}
