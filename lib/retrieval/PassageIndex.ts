import fs from "node:fs";
import path from "node:path";
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import type {GpuOption} from "../engine/addon.js";
import {buildIndex, type BuildIndexOptions, type BuildSummary} from "./buildIndex.js";
import {requireSameEmbedder, type Embedder} from "./Embedder.js";
import {GgufEmbedder} from "./GgufEmbedder.js";
import {HashingEmbedder} from "./HashingEmbedder.js";
import {IdfTable} from "./IdfTable.js";
import {filesOpened, requireVerifyPolicy, verifyIndexFiles, type VerifyPolicy} from "./IndexIntegrity.js";
import {INDEX_FILES, readManifest, type IndexManifest} from "./IndexManifest.js";
import {PassageStore, type StoredPassage} from "./PassageStore.js";
import {VectorIndex} from "./VectorIndex.js";

export interface OpenIndexOptions {
    /**
     * The embedder for queries; it must be the one the index was built with (EMBEDDER_MISMATCH
     * otherwise). Default: rebuilt from the manifest (the hashing embedder and its idf table, or
     * the GGUF model at the path recorded at build time); disposed by close().
     */
    embedder?: Embedder;
    /** Memory-map the vectors instead of loading them (shared between processes, works beyond RAM). */
    view?: boolean;
    /** USearch threads per search batch (all logical CPUs). */
    threads?: number;
    /**
     * "hnsw" (graph search) or "exact" (scan every vector; needs the index's vectors.f32, kept by
     * the build when the calibration chose exact search or with keepVectors). Default: the mode
     * the build's calibration chose, or "hnsw" when `expansionSearch` is given.
     */
    mode?: "hnsw" | "exact";
    /** HNSW candidate list size (ef); default: the value the build chose or was given. */
    expansionSearch?: number;
    /** For a default GGUF embedder. */
    gpu?: GpuOption;
    /**
     * Checking the files against the sizes and SHA-256 checksums the build recorded, before they are
     * read: "auto" (default) hashes them when together they are under AUTO_VERIFY_MAX_BYTES (2 GiB),
     * "always" whatever their size, "never" compares sizes only. A difference is INDEX_CORRUPT.
     */
    verify?: VerifyPolicy;
}

/** A passage found by a search, with its cosine similarity to the query. */
export interface SearchHit extends StoredPassage {
    score: number;
}

/**
 * A passage index on disk: USearch vectors + SQLite passages + the manifest naming the embedder.
 *
 * ```ts
 * await PassageIndex.build({corpus: "psgs_w100.tsv", out: "wiki-index"});      // hashing embedder
 * const index = await PassageIndex.open("wiki-index", {view: true});
 * const hits = await index.search("who wrote the opera Carmen", 5);           // [{id, title, text, score, key}]
 * const perQuery = await index.search(["first question", "second question"], 5);
 * await index.close();
 * ```
 */
export class PassageIndex {
    private closed = false;

    private constructor(
        public readonly dir: string,
        public readonly manifest: IndexManifest,
        public readonly embedder: Embedder,
        private readonly ownsEmbedder: boolean,
        private readonly vectors: VectorIndex,
        private readonly store: PassageStore,
        /** How this index searches: the build's calibrated choice unless open() overrode it. */
        public readonly searchMode: {mode: "hnsw" | "exact", expansionSearch: number}
    ) {}

    /**
     * Builds an index directory from a corpus file (streaming; see BuildIndexOptions). Writes into a
     * temporary sibling directory and renames it at the end, so `out` never holds a partial index.
     */
    public static build(options: BuildIndexOptions): Promise<BuildSummary> {
        return buildIndex(options);
    }

    public static async open(dir: string, options: OpenIndexOptions = {}): Promise<PassageIndex> {
        const resolved = path.resolve(dir);
        const manifest = readManifest(resolved);
        const searchMode = {
            mode: options.mode ?? (options.expansionSearch != null ? "hnsw" : manifest.search?.mode ?? "hnsw"),
            expansionSearch: options.expansionSearch ?? manifest.search?.expansionSearch ?? manifest.vectors.expansionSearch
        };
        if (searchMode.mode !== "hnsw" && searchMode.mode !== "exact") {
            throw new SelfRagError(`unknown search mode "${String(searchMode.mode)}" (expected hnsw or exact)`, "INVALID_ARGUMENT");
        }
        // Before USearch, SQLite or the embedder read anything: USearch trusts the graph it is given.
        await verifyIndexFiles(resolved, manifest, filesOpened(searchMode.mode), requireVerifyPolicy(options.verify ?? "auto"));
        const ownsEmbedder = options.embedder == null;
        const embedder = options.embedder ?? await manifestEmbedder(resolved, manifest, options.gpu);
        let vectors: VectorIndex | undefined;
        let store: PassageStore | undefined;
        try {
            requireSameEmbedder(manifest.embedder, embedder.info, `the index ${resolved}`);
            store = PassageStore.open(path.join(resolved, INDEX_FILES.passages));
            vectors = await VectorIndex.open(path.join(resolved, INDEX_FILES.vectors), {...manifest.vectors, expansionSearch: searchMode.expansionSearch},
                {view: options.view, threads: options.threads});
            const size = await vectors.size();
            if (size !== manifest.count) {
                throw new SelfRagError(`${path.join(resolved, INDEX_FILES.vectors)} holds ${size} vectors but the manifest says ${manifest.count}`,
                    "INDEX_CORRUPT");
            }
            if (searchMode.mode === "exact") await attachExactVectors(resolved, manifest, vectors);
            return new PassageIndex(resolved, manifest, embedder, ownsEmbedder, vectors, store, searchMode);
        } catch (error) {
            await vectors?.close();
            store?.close();
            if (ownsEmbedder) await embedder.dispose();
            throw error;
        }
    }

    /** Passages in the index. */
    public get size(): number {
        return this.manifest.count;
    }

    /** The `k` passages closest to the query, best first. */
    public search(query: string, k?: number): Promise<SearchHit[]>;
    /** The `k` passages closest to each query (one batch through the embedder and the index). */
    public search(queries: readonly string[], k?: number): Promise<SearchHit[][]>;
    public async search(input: string | readonly string[], k = 5): Promise<SearchHit[] | SearchHit[][]> {
        this.requireOpen();
        const queries = typeof input === "string" ? [input] : input;
        for (const [i, q] of queries.entries()) {
            if (typeof q !== "string") throw new SelfRagError(`query ${i} must be a string (got ${typeof q})`, "INVALID_ARGUMENT");
        }
        const results = await this.searchVectors(await this.embedder.embedQueries(queries), k);
        return typeof input === "string" ? results[0] : results;
    }

    /**
     * Searches with vectors embedded elsewhere (rows of the index's dimensions, unit length).
     * A query of zeros (a hashing query without a single word) finds nothing.
     */
    public async searchVectors(vectors: Float32Array, k = 5): Promise<SearchHit[][]> {
        this.requireOpen();
        requirePositiveInteger("k", k, 10_000);
        const dims = this.manifest.embedder.dimensions;
        if (!(vectors instanceof Float32Array) || vectors.length % dims !== 0) {
            throw new SelfRagError(`query vectors must be a Float32Array of rows of ${dims} floats (the index's dimensions), ` +
                `got ${vectors instanceof Float32Array ? `${vectors.length} floats` : typeof vectors}`, "DIMENSION_MISMATCH");
        }
        const matches = await this.vectors.search(vectors, Math.min(k, Math.max(1, this.manifest.count)),
            {exact: this.searchMode.mode === "exact"});
        const results: SearchHit[][] = [];
        for (let q = 0; q < vectors.length / dims; q++) {
            if (isZero(vectors, q * dims, dims)) {
                results.push([]);
                continue;
            }
            const base = q * matches.k;
            const keys = Array.from(matches.keys.subarray(base, base + matches.counts[q]), Number);
            const passages = this.store.get(keys);
            results.push(passages.flatMap((passage, i) => {
                if (passage == null) return []; // a vector without a row cannot happen in a built index; skip rather than fail
                return [{...passage, score: 1 - matches.distances[base + i]}];
            }));
        }
        return results;
    }

    /**
     * This index as a `(query, k) => passages` function, the shape long-form Self-RAG takes for
     * per-segment retrieval (`answerLong(..., {retriever: index.asRetriever()})`).
     */
    public asRetriever(): (query: string, k: number) => Promise<SearchHit[]> {
        return (query, k) => this.search(query, k);
    }

    /** Stops the vector worker, closes SQLite, and disposes the embedder if open() created it. */
    public async close(): Promise<void> {
        if (this.closed) return;
        this.closed = true;
        await this.vectors.close();
        this.store.close();
        if (this.ownsEmbedder) await this.embedder.dispose();
    }

    private requireOpen(): void {
        if (this.closed) throw new SelfRagError(`the index ${this.dir} is closed`, "INDEX_CLOSED");
    }
}

/** Loads vectors.f32 into the vector worker for exact search, checked against the manifest. */
async function attachExactVectors(dir: string, manifest: IndexManifest, vectors: VectorIndex): Promise<void> {
    const file = path.join(dir, manifest.exactVectors ?? INDEX_FILES.exactVectors);
    if (manifest.exactVectors == null || !fs.existsSync(file)) {
        throw new SelfRagError(`the index ${dir} has no vectors for exact search (${INDEX_FILES.exactVectors}); ` +
            "rebuild it with --keep-vectors (keepVectors: true), or search it with HNSW", "NO_EXACT_VECTORS");
    }
    const rows = await vectors.attachExact(file, {load: true});
    if (rows !== manifest.count) {
        throw new SelfRagError(`${file} holds ${rows} vectors but the manifest says ${manifest.count}`, "INDEX_CORRUPT");
    }
}

function isZero(vectors: Float32Array, start: number, length: number): boolean {
    for (let i = start; i < start + length; i++) if (vectors[i] !== 0) return false;
    return true;
}

/** The embedder a manifest describes, when it can be rebuilt without the caller's help. */
async function manifestEmbedder(dir: string, manifest: IndexManifest, gpu: GpuOption | undefined): Promise<Embedder> {
    const info = manifest.embedder;
    if (info.kind === "hashing") {
        const details = info.details as {bigramWeight?: number, idfFingerprint?: string};
        const idf = details.idfFingerprint != null && details.idfFingerprint !== "none"
            ? IdfTable.load(path.join(dir, INDEX_FILES.idf)) : undefined;
        return new HashingEmbedder({dimensions: info.dimensions, bigramWeight: details.bigramWeight, idf});
    }
    const details = info.details as {modelPath?: string, maxTokens?: number, queryPrefix?: string, passagePrefix?: string};
    if (details.modelPath == null || !fs.existsSync(details.modelPath)) {
        throw new SelfRagError(`the index ${dir} was built with the embedding model "${info.name}" at ${details.modelPath ?? "(unknown path)"}, ` +
            "which is not there any more; pass the model (--embedder FILE.gguf, or the embedder option)", "EMBEDDER_REQUIRED");
    }
    return GgufEmbedder.load({
        modelPath: details.modelPath, gpu, queryPrefix: details.queryPrefix, passagePrefix: details.passagePrefix,
        contextSize: details.maxTokens != null ? details.maxTokens + 4 : undefined
    });
}
