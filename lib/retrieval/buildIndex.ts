// Building an index directory from a corpus file: read (streaming), embed, store, add, save.
//
// Crash safety: everything is written into a sibling temporary directory `.NAME.building` that is
// renamed to NAME only when complete, so NAME is either absent, the previous index, or the new
// complete one, whatever happens to the process (rename within a directory is atomic). The
// temporary directory holds the builder's pid: a later build removes it when that process is
// gone (a crash or kill -9) and refuses to start while it still runs.
//
// The event loop: the USearch inserts, the slow part, run on VectorIndex's worker thread. The
// main thread reads, embeds and stores one batch (256 passages: a few milliseconds with the
// hashing embedder, GGUF embeddings are computed by llama.cpp off the loop) while the worker
// inserts the previous one, and it returns to the event loop between batches.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import {openCorpus, type Corpus, type CorpusFormat, type CorpusItem} from "./corpusReaders.js";
import {passageText, type Embedder, type EmbedderInfo} from "./Embedder.js";
import {HashingEmbedder} from "./HashingEmbedder.js";
import {IdfTable} from "./IdfTable.js";
import {INDEX_FILES, writeManifest, type IndexManifest} from "./IndexManifest.js";
import {recordIndexFiles} from "./IndexIntegrity.js";
import type {ByteCounter} from "./lineReader.js";
import {PassageStore} from "./PassageStore.js";
import {DEFAULT_VECTOR_INDEX, VectorIndex, type VectorDtype} from "./VectorIndex.js";
import {FlatVectorWriter} from "./ExactSearch.js";
import {HeldOutSample} from "./HeldOutSample.js";
import {questionLikeQueries} from "./CalibrationQueries.js";
import {calibrateSearch, chooseSearchPlan, DEFAULT_CALIBRATION, resolveCalibrationOptions, type SearchCalibrationOptions, type SearchPlan} from "./SearchCalibration.js";

export interface BuildIndexOptions {
    /** The corpus file (DPR .tsv, passages .jsonl, or an evaluation file with ctxs; .gz accepted). */
    corpus: string;
    /** The index directory to create. */
    out: string;
    format?: CorpusFormat;
    /**
     * The embedder (not disposed by the build). Default: a HashingEmbedder with idf weights counted
     * in a first pass over the corpus (tokenising only: several times faster than the build pass).
     */
    embedder?: Embedder;
    /**
     * Settings of the default embedder. `idfSample`: count word frequencies over the first N
     * passages only (undefined: all of them, which also gives the progress line an exact total;
     * 0: no idf weights).
     */
    hashing?: {dimensions?: number, bigramWeight?: number, idfSample?: number};
    dtype?: VectorDtype;
    connectivity?: number;
    expansionAdd?: number;
    /** The default search ef. Setting it turns the calibration off unless `calibration` is given. */
    expansionSearch?: number;
    /**
     * Search calibration (see SearchCalibration.ts): a sample of passages is held out, the finished
     * index is searched at increasing ef against exact search with question-like spans of them
     * (or `questions`, real ones), embedded as queries, and the cheapest search reaching the
     * target recall becomes the index's default (HNSW at that ef, or exact search); the held-out
     * passages' own recall is reported beside. `{queries: 0}` turns it off. Indexes under 1000
     * passages are not calibrated (HNSW at the default ef finds the exact top k there).
     */
    calibration?: SearchCalibrationOptions;
    /** Keep vectors.f32 (4 bytes x dims per passage) for exact search even when HNSW is the default. */
    keepVectors?: boolean;
    /** USearch threads for adding (all logical CPUs). */
    threads?: number;
    /** Passages embedded, stored and added per step (256). */
    batchSize?: number;
    /** Fail at the first malformed line instead of reporting and skipping it. */
    strict?: boolean;
    /** Replace an existing index at `out` (it stays intact until the new one is complete). */
    overwrite?: boolean;
    signal?: AbortSignal;
    onProgress?: (progress: BuildProgress) => void;
    /** Called for each malformed line skipped, with "file:line: reason". */
    onMalformed?: (message: string, line: number) => void;
}

export interface BuildProgress {
    /**
     * "idf": counting word frequencies; "index": embedding and adding; "calibrate": measuring
     * search recall and cost (`step` says what); "save": writing the index file, then (`step`) hashing
     * every file for the manifest.
     */
    phase: "idf" | "index" | "calibrate" | "save";
    step?: string;
    passages: number;
    malformed: number;
    duplicates: number;
    bytesRead: number;
    totalBytes: number;
    /** Passages in the corpus when known (the idf pass read it all). */
    totalPassages?: number;
    /** Since the build started. */
    elapsedMs: number;
    /** Since this phase started (rates and ETAs come from this). */
    phaseElapsedMs: number;
}

export interface BuildSummary {
    dir: string;
    count: number;
    malformed: number;
    duplicates: number;
    /** The first 20 malformed-line messages. */
    malformedExamples: string[];
    seconds: number;
    embedder: EmbedderInfo;
    manifest: IndexManifest;
}

const MAX_EXAMPLES = 20;
/** Below this many passages HNSW at the default ef is as good as exact; no calibration. */
const MIN_CALIBRATED = 1000;

/**
 * Builds an index directory: vectors.usearch (HNSW, cosine), passages.sqlite, manifest.json and,
 * for the default embedder, idf.bin. See PassageIndex.build.
 */
export async function buildIndex(options: BuildIndexOptions): Promise<BuildSummary> {
    const started = Date.now();
    const out = path.resolve(options.out);
    const batchSize = requirePositiveInteger("batchSize", options.batchSize ?? 256, 1 << 16);
    const calibration = resolveCalibrationOptions({
        ...options.calibration,
        queries: options.calibration?.queries ?? (options.expansionSearch != null ? 0 : DEFAULT_CALIBRATION.queries)
    });
    const calibrationQueries = calibration.queries;
    const corpus = await openCorpus(options.corpus, {format: options.format});
    checkOutput(out, options.overwrite ?? false);
    const temp = claimTempDir(out);
    const state = {passages: 0, malformed: 0, duplicates: 0, examples: [] as string[], totalPassages: undefined as number | undefined};
    const counter: ByteCounter = {bytes: 0};
    let phaseStarted = started;
    const progress = (phase: BuildProgress["phase"], step?: string) => options.onProgress?.({
        phase, step, passages: state.passages, malformed: state.malformed, duplicates: state.duplicates, bytesRead: counter.bytes,
        totalBytes: corpus.totalBytes, totalPassages: state.totalPassages, elapsedMs: Date.now() - started,
        phaseElapsedMs: Date.now() - phaseStarted
    });
    let index: VectorIndex | undefined;
    let store: PassageStore | undefined;
    let flat: FlatVectorWriter | undefined;
    try {
        const embedder = options.embedder ?? await defaultEmbedder(corpus, options, state, started);
        if (embedder instanceof HashingEmbedder && embedder.idf != null) embedder.idf.save(path.join(temp, INDEX_FILES.idf));
        const dims = embedder.info.dimensions;
        const config = {
            dimensions: dims, dtype: options.dtype ?? DEFAULT_VECTOR_INDEX.dtype,
            connectivity: options.connectivity ?? DEFAULT_VECTOR_INDEX.connectivity,
            expansionAdd: options.expansionAdd ?? DEFAULT_VECTOR_INDEX.expansionAdd,
            expansionSearch: options.expansionSearch ?? DEFAULT_VECTOR_INDEX.expansionSearch
        };
        index = await VectorIndex.create(config, {threads: options.threads});
        store = PassageStore.create(path.join(temp, INDEX_FILES.passages));
        const passages = store;
        const building = index;
        const flatFile = path.join(temp, INDEX_FILES.exactVectors);
        if (calibrationQueries > 0 || options.keepVectors) flat = new FlatVectorWriter(flatFile, dims);
        const heldOut = new HeldOutSample(calibrationQueries, dims);

        // One add in flight on the worker while the main thread embeds and stores the next batch.
        let pendingAdd: Promise<void> | undefined;
        let nextKey = 1;
        const flush = async (batch: Extract<CorpusItem, {kind: "passage"}>[]) => {
            const embedded = await embedder.embedPassages(batch.map((b) => b.passage));
            if (embedded.length !== batch.length * dims) {
                throw new SelfRagError(`the embedder returned ${embedded.length} floats for ${batch.length} passages of ${dims} dimensions`,
                    "DIMENSION_MISMATCH");
            }
            passages.insert(batch, nextKey);
            flat?.append(embedded);
            const keys = BigUint64Array.from({length: batch.length}, (_, i) => BigInt(nextKey + i));
            nextKey += batch.length;
            const toAdd = heldOut.offer(keys, embedded);
            await pendingAdd;
            pendingAdd = building.add(toAdd.keys, toAdd.rows, {transfer: true});
            pendingAdd.catch(() => undefined); // awaited at the next flush; this only keeps Node from calling it unhandled
            state.passages += batch.length;
            progress("index");
        };

        let batch: Extract<CorpusItem, {kind: "passage"}>[] = [];
        phaseStarted = Date.now();
        for await (const item of corpus.items(counter)) {
            if (item.kind === "passage") {
                batch.push(item);
                if (batch.length >= batchSize) {
                    throwIfAborted(options.signal);
                    await flush(batch);
                    batch = [];
                }
            } else if (item.kind === "duplicate") {
                state.duplicates++;
            } else {
                if (options.strict) throw new SelfRagError(`${item.message} (--strict: stopping at the first malformed line)`, "MALFORMED_CORPUS");
                state.malformed++;
                if (state.examples.length < MAX_EXAMPLES) state.examples.push(item.message);
                options.onMalformed?.(item.message, item.line);
            }
        }
        if (batch.length > 0) await flush(batch);
        await pendingAdd;
        throwIfAborted(options.signal);
        if (state.passages === 0) {
            throw new SelfRagError(`corpus ${corpus.file} holds no passages` +
                (state.malformed > 0 ? ` (all ${state.malformed} non-empty lines were malformed; first: ${state.examples[0]})` : ""),
            "EMPTY_CORPUS");
        }

        // Calibrate on the index without the held-out sample, then add the sample and save again.
        const vectorsFile = path.join(temp, INDEX_FILES.vectors);
        const sample = heldOut.sample();
        // The queries: the user's questions, or a question-like span of each held-out passage,
        // embedded as queries (prefix included); the held-out passages are measured too.
        let questionVectors: Float32Array | undefined;
        let queryKind: "questions" | "spans" = "spans";
        if (sample.keys.length > 0 && state.passages >= MIN_CALIBRATED) {
            const given = calibration.questions;
            const held = passages.get(Array.from(sample.keys, Number)).filter((p): p is NonNullable<typeof p> => p != null);
            const queries = given.length > 0 ? [...given] : questionLikeQueries(held);
            if (given.length > 0) queryKind = "questions";
            questionVectors = await embedder.embedQueries(queries);
        }
        passages.close();
        flat?.close();
        let plan: SearchPlan = {mode: "hnsw", expansionSearch: config.expansionSearch,
            uncalibrated: calibrationQueries === 0
                ? (options.expansionSearch != null ? "the search ef was given" : "calibration turned off")
                : `${state.passages} passages, under ${MIN_CALIBRATED}: HNSW at ef ${config.expansionSearch} finds the exact top k on an index this small`};
        if (sample.keys.length > 0 && state.passages >= MIN_CALIBRATED) {
            progress("calibrate", "saving the index without the held-out sample");
            await index.save(vectorsFile);
            await index.close();
            index = undefined;
            const report = await calibrateSearch({
                indexFile: vectorsFile, config, flatFile, heldOutKeys: sample.keys, heldOut: questionVectors ?? sample.rows,
                queryKind: questionVectors != null ? queryKind : "passages", passageQueries: questionVectors != null ? sample.rows : undefined,
                count: state.passages,
                threads: options.threads, options: calibration, onStep: (step) => {
                    throwIfAborted(options.signal);
                    progress("calibrate", step);
                }
            });
            plan = chooseSearchPlan(report);
            index = await VectorIndex.open(vectorsFile, {...config, expansionSearch: plan.expansionSearch}, {threads: options.threads});
        }
        await index.add(sample.keys, sample.rows);
        throwIfAborted(options.signal);
        progress("save");
        await index.save(vectorsFile);
        await index.close();
        const keepExact = plan.mode === "exact" || (options.keepVectors ?? false);
        if (flat != null && !keepExact) fs.rmSync(flatFile);
        // Every file is final: their sizes and checksums go into the manifest, checked when the index is opened.
        progress("save", "recording file checksums");
        const files = await recordIndexFiles(temp);
        const manifest = writeManifest(temp, {
            format: "selfrag-passage-index", version: 1, createdAt: new Date().toISOString(),
            embedder: embedder.info, vectors: {...config, expansionSearch: plan.expansionSearch, metric: "cos"},
            search: plan, exactVectors: keepExact ? INDEX_FILES.exactVectors : undefined, count: state.passages,
            corpus: {file: path.resolve(corpus.file), format: corpus.format, bytes: corpus.totalBytes, malformed: state.malformed,
                duplicates: state.duplicates},
            files
        });
        publish(temp, out, options.overwrite ?? false);
        return {
            dir: out, count: state.passages, malformed: state.malformed, duplicates: state.duplicates, malformedExamples: state.examples,
            seconds: (Date.now() - started) / 1000, embedder: embedder.info, manifest
        };
    } catch (error) {
        await index?.close();
        store?.close();
        flat?.close();
        fs.rmSync(temp, {recursive: true, force: true});
        throw error;
    }
}

/** The hashing embedder with idf weights from a first pass over (a sample of) the corpus. */
async function defaultEmbedder(corpus: Corpus, options: BuildIndexOptions, state: {totalPassages?: number}, started: number): Promise<Embedder> {
    const sample = options.hashing?.idfSample ?? Number.POSITIVE_INFINITY;
    if (!(Number.isInteger(sample) || sample === Number.POSITIVE_INFINITY) || sample < 0) throw new SelfRagError(`idfSample must be a non-negative integer, got ${sample}`, "INVALID_ARGUMENT");
    let idf: IdfTable | undefined;
    if (sample > 0) {
        const counter = IdfTable.counter();
        const bytes: ByteCounter = {bytes: 0};
        let complete = true;
        for await (const item of corpus.items(bytes)) {
            if (item.kind !== "passage") continue;
            if (counter.documents >= sample) {
                complete = false;
                break;
            }
            counter.add(passageText(item.passage));
            if (counter.documents % 10_000 === 0) {
                throwIfAborted(options.signal);
                options.onProgress?.({phase: "idf", passages: counter.documents, malformed: 0, duplicates: 0, bytesRead: bytes.bytes,
                    totalBytes: corpus.totalBytes, elapsedMs: Date.now() - started, phaseElapsedMs: Date.now() - started});
            }
        }
        // Having read the whole corpus, the count of passages is known: the progress shows an exact ETA.
        if (complete) state.totalPassages = counter.documents;
        if (counter.documents > 0) idf = counter.finish(complete);
    }
    return new HashingEmbedder({dimensions: options.hashing?.dimensions, bigramWeight: options.hashing?.bigramWeight, idf});
}

function throwIfAborted(signal: AbortSignal | undefined): void {
    if (signal?.aborted) throw new SelfRagError("the index build was interrupted; nothing was written to the output", "ABORTED");
}

function checkOutput(out: string, overwrite: boolean): void {
    if (!fs.existsSync(out)) return;
    if (!fs.statSync(out).isDirectory()) throw new SelfRagError(`${out} exists and is not a directory`, "OUTPUT_EXISTS");
    if (fs.readdirSync(out).length === 0) return;
    if (!fs.existsSync(path.join(out, INDEX_FILES.manifest))) {
        throw new SelfRagError(`${out} exists and is not a selfrag index; choose another --out (nothing is overwritten but an index)`,
            "OUTPUT_EXISTS");
    }
    if (!overwrite) throw new SelfRagError(`an index already exists at ${out}; pass --overwrite to replace it`, "OUTPUT_EXISTS");
}

interface BuildLock {
    pid: number;
    host: string;
    started: string;
}

/** Creates `.NAME.building` next to `out`, removing one left by a build that is no longer running. */
function claimTempDir(out: string): string {
    const temp = path.join(path.dirname(out), `.${path.basename(out)}.building`);
    const lockFile = path.join(temp, "build.json");
    if (fs.existsSync(temp)) {
        let lock: BuildLock | undefined;
        try {
            lock = JSON.parse(fs.readFileSync(lockFile, "utf8")) as BuildLock;
        } catch {
            lock = undefined; // no readable lock: the build died before writing it
        }
        if (lock != null && lock.host === os.hostname() && lock.pid !== process.pid && isRunning(lock.pid)) {
            throw new SelfRagError(`another build (pid ${lock.pid}, started ${lock.started}) is writing ${out}; ` +
                `wait for it, or stop it and run again`, "BUILD_IN_PROGRESS");
        }
        fs.rmSync(temp, {recursive: true, force: true});
    }
    fs.mkdirSync(temp, {recursive: true});
    const lock: BuildLock = {pid: process.pid, host: os.hostname(), started: new Date().toISOString()};
    fs.writeFileSync(lockFile, JSON.stringify(lock) + "\n");
    return temp;
}

function isRunning(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (error) {
        return (error as NodeJS.ErrnoException).code === "EPERM";
    }
}

/** Moves the finished index into place; an old index is set aside first and removed after. */
function publish(temp: string, out: string, overwrite: boolean): void {
    fs.rmSync(path.join(temp, "build.json"));
    if (fs.existsSync(out)) {
        checkOutput(out, overwrite); // it may have appeared while we built
        if (fs.readdirSync(out).length === 0) {
            fs.rmdirSync(out);
        } else {
            const old = path.join(path.dirname(out), `.${path.basename(out)}.old-${process.pid}`);
            fs.renameSync(out, old);
            fs.renameSync(temp, out);
            fs.rmSync(old, {recursive: true, force: true});
            return;
        }
    }
    fs.renameSync(temp, out);
}
