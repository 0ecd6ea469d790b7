// Search calibration: measure, on the index just built, which search meets a recall target at the
// lowest cost, and record the answer in the manifest.
//
// Why: HNSW's recall at a given ef depends on the data, not on the index settings alone. With
// real embeddings (low intrinsic dimension) ef 64 finds the whole exact top 10; with vectors that
// behave like isotropic random ones (every distance about the same), ef 2048 finds 80% of it at a
// higher cost than scanning every vector. A fixed ef is wrong for one of the two, silently. So a
// build holds out a uniform sample of its own passages (reservoir sampling; they are added after
// calibration), searches them at increasing ef against the exact top k, and times exact search on
// the same queries; the cheapest search reaching the target wins, and exact search is a candidate
// when the flat vectors fit the memory budget.
import os from "node:os";
import {SelfRagError, requireNumberInRange, requirePositiveInteger} from "../errors.js";
import {VectorIndex, type VectorIndexConfig, type VectorMatches} from "./VectorIndex.js";

export interface SearchCalibrationOptions {
    /** Held-out passages (200; 0 turns calibration off): question-like spans of them are the queries, and they are measured too. */
    queries?: number;
    /** Real questions to calibrate with instead of the held-out passages' spans. */
    questions?: readonly string[];
    /** Recall@k the search must reach (0.95). */
    targetRecall?: number;
    /** The k of recall@k (10). */
    k?: number;
    /** Largest ef tried (4096). */
    maxExpansion?: number;
    /** Exact search is a candidate only if its vectors (4 bytes x dims x count) fit this (min(4 GiB, RAM / 4)). */
    exactMemoryLimit?: number;
}

export const DEFAULT_CALIBRATION = {queries: 200, targetRecall: 0.95, k: 10, maxExpansion: 4096} as const;

/** One measured search configuration. */
export interface MeasuredSearch {
    expansionSearch: number;
    /** Mean recall@k against exact search. */
    recall: number;
    /**
     * A lower bound on the recall over all queries like these: the mean minus two standard errors
     * of the per-query recalls. The choice uses it, so a setting that only just reached the target
     * on the sample is not taken for one that reaches it.
     */
    recallLowerBound: number;
    /** Per query, in a batch of all calibration queries (best of three runs). */
    usPerQuery: number;
}

export interface CalibrationReport {
    k: number;
    queries: number;
    /**
     * What the queries were: "questions" (the user's), "spans" (a question-like span of each
     * held-out passage, embedded as a query) or "passages" (the held-out passages' own vectors).
     */
    queryKind?: "questions" | "spans" | "passages";
    /** The held-out passages' vectors measured at the same ef values, for comparison (recall only). */
    passages?: {queries: number, hnsw: {expansionSearch: number, recall: number}[]};
    targetRecall: number;
    /** Exact search: always recall 1; its time is measured only when it is a candidate. */
    exact: {candidate: boolean, vectorBytes: number, memoryLimit: number, usPerQuery?: number};
    /** HNSW at increasing ef, stopping at the first that meets the target or costs more than exact search. */
    hnsw: MeasuredSearch[];
}

/** How an index is searched by default (manifest.search). */
export interface SearchPlan {
    mode: "hnsw" | "exact";
    expansionSearch: number;
    /** Recall@k measured by the calibration for this plan (undefined: not calibrated). */
    recall?: number;
    /** Whether the plan's recall lower bound reaches the target. */
    meetsTarget?: boolean;
    /** Why the build did not calibrate, when it did not. */
    uncalibrated?: string;
    calibration?: CalibrationReport;
}

/** Fraction of the exact top k found, per query. */
export function recallPerQuery(found: VectorMatches, truth: VectorMatches, k: number): number[] {
    return Array.from(found.counts, (count, q) => {
        const wanted = Math.min(k, truth.counts[q]);
        if (wanted === 0) return 1;
        const exact = new Set(truth.keys.subarray(q * truth.k, q * truth.k + wanted));
        let hits = 0;
        for (let i = 0; i < Math.min(k, count); i++) if (exact.has(found.keys[q * found.k + i])) hits++;
        return hits / wanted;
    });
}

/** Mean recall and its lower bound (mean - 2 standard errors), as in MeasuredSearch. */
export function recallEstimate(perQuery: readonly number[]): {recall: number, recallLowerBound: number} {
    const n = perQuery.length;
    if (n === 0) return {recall: 1, recallLowerBound: 1};
    const mean = perQuery.reduce((a, b) => a + b, 0) / n;
    const variance = n > 1 ? perQuery.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
    return {recall: mean, recallLowerBound: Math.max(0, mean - 2 * Math.sqrt(variance / n))};
}

/**
 * The cheapest measured search that meets the target (exact search counts, with recall 1, when it
 * is a candidate); when none does, the HNSW setting with the highest recall.
 */
export function chooseSearchPlan(report: CalibrationReport): SearchPlan {
    type Option = {mode: "hnsw" | "exact", expansionSearch: number, recall: number, recallLowerBound: number, usPerQuery: number};
    const options: Option[] = report.hnsw.map((m) => ({mode: "hnsw" as const, ...m}));
    const lastEf = report.hnsw.at(-1)?.expansionSearch ?? DEFAULT_CALIBRATION.maxExpansion;
    if (report.exact.candidate && report.exact.usPerQuery != null) {
        options.push({mode: "exact", expansionSearch: lastEf, recall: 1, recallLowerBound: 1, usPerQuery: report.exact.usPerQuery});
    }
    if (options.length === 0) throw new SelfRagError("the calibration measured no search configuration", "INTERNAL");
    const meets = (o: Option) => o.recallLowerBound >= report.targetRecall;
    const meeting = options.filter(meets).sort((a, b) => a.usPerQuery - b.usPerQuery);
    const best = meeting[0] ?? [...options].sort((a, b) => b.recall - a.recall || a.usPerQuery - b.usPerQuery)[0];
    return {mode: best.mode, expansionSearch: best.expansionSearch, recall: best.recall, meetsTarget: meets(best), calibration: report};
}

export interface CalibrationInput {
    /** The saved HNSW index, without the held-out vectors. */
    indexFile: string;
    config: VectorIndexConfig;
    /** vectors.f32 holding every vector, the held-out ones included (row r = key r + 1). */
    flatFile: string;
    /** The queries (packed rows): question-like ones, or the held-out vectors. */
    heldOut: Float32Array;
    queryKind?: CalibrationReport["queryKind"];
    /** Also measured at every ef, for comparison: the held-out passages' own vectors. */
    passageQueries?: Float32Array;
    /**
     * Their keys when they are rows of the flat file but not in the index (a build's held-out
     * passages): excluded from the ground truth. Empty for queries from elsewhere.
     */
    heldOutKeys: BigUint64Array;
    /** Vectors in the flat file. */
    count: number;
    threads?: number;
    options?: SearchCalibrationOptions;
    /** Called before each measurement, for progress lines. */
    onStep?: (step: string) => void;
}

export function defaultExactMemoryLimit(): number {
    return Math.min(4 * 1024 ** 3, Math.floor(os.totalmem() / 4));
}

/** The options with defaults filled in; names the bad option (call it before a long build, not after). */
export function resolveCalibrationOptions(o: SearchCalibrationOptions = {}): Required<SearchCalibrationOptions> {
    const queries = o.queries ?? DEFAULT_CALIBRATION.queries;
    if (o.questions != null && (!Array.isArray(o.questions) || o.questions.some((q) => typeof q !== "string"))) {
        throw new SelfRagError("calibration questions must be an array of strings", "INVALID_ARGUMENT");
    }
    if (!Number.isInteger(queries) || queries < 0 || queries > 100_000) {
        throw new SelfRagError(`calibration queries must be an integer between 0 and 100000, got ${queries}`, "INVALID_ARGUMENT");
    }
    const memoryLimit = o.exactMemoryLimit ?? defaultExactMemoryLimit();
    if (typeof memoryLimit !== "number" || !(memoryLimit >= 0)) {
        throw new SelfRagError(`exactMemoryLimit must be a number of bytes >= 0, got ${memoryLimit}`, "INVALID_ARGUMENT");
    }
    return {
        queries,
        questions: o.questions ?? [],
        k: requirePositiveInteger("calibration k", o.k ?? DEFAULT_CALIBRATION.k, 1000),
        targetRecall: requireNumberInRange("targetRecall", o.targetRecall ?? DEFAULT_CALIBRATION.targetRecall, 0, 1),
        maxExpansion: requirePositiveInteger("maxExpansion", o.maxExpansion ?? DEFAULT_CALIBRATION.maxExpansion, 65536),
        exactMemoryLimit: memoryLimit
    };
}

/** Measures exact search and HNSW at increasing ef on the held-out queries (see the file comment). */
export async function calibrateSearch(input: CalibrationInput): Promise<CalibrationReport> {
    const {k, targetRecall: target, maxExpansion, exactMemoryLimit: memoryLimit} = resolveCalibrationOptions(input.options);
    const dims = input.config.dimensions;
    const queries = input.heldOut.length / dims;
    if (!Number.isInteger(queries) || queries === 0) {
        throw new SelfRagError(`calibration queries must be whole rows of ${dims} floats, got ${input.heldOut.length} floats`, "INVALID_ARGUMENT");
    }
    const vectorBytes = 4 * dims * input.count;
    const candidate = vectorBytes <= memoryLimit;
    const held = new Set(input.heldOutKeys);

    // Ground truth: exact top k over everything but the held-out vectors (asking for k + held-out
    // and dropping those leaves k, whatever the held-out vectors' ranks).
    const exactIndex = await VectorIndex.create({...input.config}, {threads: input.threads});
    let truth: VectorMatches;
    let passageTruth: VectorMatches | undefined;
    let exactUs: number | undefined;
    try {
        input.onStep?.("exact search (ground truth)");
        await exactIndex.attachExact(input.flatFile, {load: candidate});
        const wide = await exactIndex.search(input.heldOut, Math.min(k + held.size, input.count), {exact: true});
        truth = dropKeys(wide, held, k);
        if (input.passageQueries != null) {
            passageTruth = dropKeys(await exactIndex.search(input.passageQueries, Math.min(k + held.size, input.count), {exact: true}), held, k);
        }
        if (candidate) {
            // Served exact search asks for k, and sees the held-out rows too: same cost to within k + queries vs k.
            exactUs = await bestOfThree(async () => exactIndex.search(input.heldOut, Math.min(k, input.count), {exact: true}), queries);
        }
    } finally {
        await exactIndex.close();
    }

    const hnsw: MeasuredSearch[] = [];
    const passageRecalls: {expansionSearch: number, recall: number}[] = [];
    for (let ef = Math.min(16, maxExpansion); ef <= maxExpansion; ef *= 2) {
        input.onStep?.(`HNSW search at ef ${ef}`);
        const index = await VectorIndex.open(input.indexFile, {...input.config, expansionSearch: ef}, {view: true, threads: input.threads});
        try {
            const found = await index.search(input.heldOut, k);
            const usPerQuery = await bestOfThree(() => index.search(input.heldOut, k), queries);
            const measured = {expansionSearch: ef, ...recallEstimate(recallPerQuery(found, truth, k)), usPerQuery};
            hnsw.push(measured);
            if (input.passageQueries != null && passageTruth != null) {
                const recalls = recallPerQuery(await index.search(input.passageQueries, k), passageTruth, k);
                passageRecalls.push({expansionSearch: ef, recall: recallEstimate(recalls).recall});
            }
            // Higher ef only costs more: stop once the target is met or exact search is cheaper.
            if (measured.recallLowerBound >= target) break;
            if (exactUs != null && usPerQuery >= exactUs) break;
        } finally {
            await index.close();
        }
    }
    return {
        k, queries, queryKind: input.queryKind ?? "passages", targetRecall: target, exact: {candidate, vectorBytes, memoryLimit, usPerQuery: exactUs}, hnsw,
        ...(input.passageQueries != null ? {passages: {queries: input.passageQueries.length / dims, hnsw: passageRecalls}} : {})
    };
}

async function bestOfThree(run: () => Promise<unknown>, queries: number): Promise<number> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
        const started = performance.now();
        await run();
        best = Math.min(best, (performance.now() - started) * 1000 / queries);
    }
    return best;
}

function dropKeys(matches: VectorMatches, drop: ReadonlySet<bigint>, k: number): VectorMatches {
    const queries = matches.counts.length;
    const keys = new BigUint64Array(queries * k);
    const distances = new Float32Array(queries * k);
    const counts = new Uint32Array(queries);
    for (let q = 0; q < queries; q++) {
        let n = 0;
        for (let i = 0; i < matches.counts[q] && n < k; i++) {
            const key = matches.keys[q * matches.k + i];
            if (drop.has(key)) continue;
            keys[q * k + n] = key;
            distances[q * k + n] = matches.distances[q * matches.k + i];
            n++;
        }
        counts[q] = n;
    }
    return {k, keys, distances, counts};
}
