// A USearch HNSW index (cosine) run on a worker thread.
//
// Why a worker: USearch's JavaScript binding is synchronous. Adding is the slow part (a few
// thousand 384-dim vectors per second and core with f16), so adding a batch of 1000 blocks the
// calling thread for hundreds of milliseconds, and a 21M-passage build for hours; on the main
// thread that would freeze the progress line, timers and every other request. On a worker, the
// add uses USearch's own thread pool while the main thread embeds and stores the next batch, so
// the two overlap, and a search never stalls the caller's event loop. The cost is one message
// round trip per call (tens of microseconds, nothing next to a search) and a copy of the vectors
// unless they are transferred.
import fs from "node:fs";
import os from "node:os";
import {Worker} from "node:worker_threads";
import {SelfRagError, requirePositiveInteger} from "../errors.js";

/** Storage type of the vectors: f16 halves f32's size at no measurable recall cost; i8 quarters it. */
export type VectorDtype = "f16" | "i8" | "f32";
export const VECTOR_DTYPES: readonly VectorDtype[] = ["f16", "i8", "f32"];

export interface VectorIndexConfig {
    dimensions: number;
    dtype: VectorDtype;
    /** HNSW graph degree M (USearch's default 16). More: better recall, more memory per vector. */
    connectivity: number;
    /** Candidate list size while inserting (efConstruction). */
    expansionAdd: number;
    /** Candidate list size while searching (ef): raise it for recall, lower it for speed. */
    expansionSearch: number;
}

export const DEFAULT_VECTOR_INDEX: Omit<VectorIndexConfig, "dimensions"> = {
    dtype: "f16", connectivity: 16, expansionAdd: 128, expansionSearch: 128
};

/** Rows of nearest neighbours, `k` slots per query, the first `counts[q]` of them filled. */
export interface VectorMatches {
    k: number;
    keys: BigUint64Array;
    /** Cosine distance, 1 - cosine similarity. */
    distances: Float32Array;
    counts: Uint32Array;
}

/** @internal the messages between VectorIndex and vectorIndexWorker. */
export type WorkerRequest = {id: number} & (
    | {op: "create", config: VectorIndexConfig}
    | {op: "open", config: VectorIndexConfig, path: string, view: boolean}
    | {op: "add", keys: BigUint64Array, vectors: Float32Array, threads: number}
    | {op: "search", queries: Float32Array, k: number, threads: number}
    | {op: "attachExact", path: string, dimensions: number, load: boolean, firstKey: number}
    | {op: "exact", queries: Float32Array, k: number, threads: number}
    | {op: "save", path: string}
    | {op: "stats"});
/** A request without its id (Omit over each member of the union, not over the union). */
type RequestBody = WorkerRequest extends infer R ? R extends {id: number} ? Omit<R, "id"> : never : never;
/** @internal */
export type WorkerReply = {id: number, ok: true, value?: unknown} | {id: number, ok: false, message: string, code: string};

export interface VectorIndexOptions {
    /** Threads USearch uses for a batch add or search (all logical CPUs). */
    threads?: number;
}

/**
 * A cosine HNSW index over `dimensions`-float vectors with 64-bit keys.
 *
 * ```ts
 * const index = await VectorIndex.create({...DEFAULT_VECTOR_INDEX, dimensions: 384});
 * await index.add(BigUint64Array.of(1n, 2n), vectors);   // 2 x 384 floats
 * const found = await index.search(query, 10);           // nearest keys and cosine distances
 * await index.save("vectors.usearch");
 * await index.close();
 * const mapped = await VectorIndex.open("vectors.usearch", config, {view: true}); // memory-mapped
 * ```
 */
export class VectorIndex {
    private readonly pending = new Map<number, {resolve: (value: unknown) => void, reject: (error: Error) => void}>();
    private nextId = 1;
    private closed = false;
    private failure?: Error;
    private readonly threads: number;

    private readonly worker: Worker;
    /** Opened with view: USearch cannot add to a memory-mapped index. */
    private readOnly = false;
    /** Rows of the attached flat vectors, if any. */
    private exactRows?: number;

    private constructor(public readonly config: VectorIndexConfig, options: VectorIndexOptions) {
        this.threads = requirePositiveInteger("threads", options.threads ?? os.availableParallelism(), 1024);
        const worker = this.worker = new Worker(new URL("./vectorIndexWorker.js", import.meta.url));
        // Idle, the worker must not keep the process alive (an index someone forgot to close would
        // hang the process); it is ref'd only while a request is in flight.
        worker.unref();
        worker.on("message", (reply: WorkerReply) => this.settle(reply));
        worker.on("error", (error) => this.fail(new SelfRagError(`the vector index worker failed: ${error.message}`, "INTERNAL", {cause: error})));
        worker.on("exit", (code) => {
            if (!this.closed) this.fail(new SelfRagError(`the vector index worker exited (code ${code})`, "INTERNAL"));
        });
    }

    /** A new, empty index. */
    public static async create(config: VectorIndexConfig, options: VectorIndexOptions = {}): Promise<VectorIndex> {
        const index = new VectorIndex(validateConfig(config), options);
        try {
            await index.request({op: "create", config: index.config});
            return index;
        } catch (error) {
            await index.close();
            throw error;
        }
    }

    /**
     * An index saved with save(): loaded into memory, or with `view` memory-mapped from the file
     * (read-only; pages are shared with other processes viewing the same file, and an index larger
     * than RAM still works, paged in as searches touch it).
     */
    public static async open(file: string, config: VectorIndexConfig, options: VectorIndexOptions & {view?: boolean} = {}): Promise<VectorIndex> {
        if (!fs.existsSync(file)) throw new SelfRagError(`vector index file not found: ${file}`, "INDEX_NOT_FOUND");
        const index = new VectorIndex(validateConfig(config), options);
        try {
            const stats = await index.request({op: "open", config: index.config, path: file, view: options.view ?? false}) as {dimensions: number};
            if (stats.dimensions !== config.dimensions) {
                throw new SelfRagError(`the vector index ${file} holds ${stats.dimensions}-dimensional vectors, expected ${config.dimensions}`,
                    "DIMENSION_MISMATCH");
            }
            index.readOnly = options.view ?? false;
            return index;
        } catch (error) {
            await index.close();
            throw error;
        }
    }

    /**
     * Adds `keys.length` vectors (packed rows of `dimensions` floats). With `transfer`, the arrays'
     * memory moves to the worker instead of being copied and the caller's arrays become unusable.
     */
    public async add(keys: BigUint64Array, vectors: Float32Array, options: {transfer?: boolean} = {}): Promise<void> {
        if (this.readOnly) throw new SelfRagError("a viewed (memory-mapped) vector index is read-only; open it without view to add", "INVALID_STATE");
        this.requireRows(vectors, "vectors");
        if (vectors.length / this.config.dimensions !== keys.length) {
            throw new SelfRagError(`${keys.length} keys for ${vectors.length / this.config.dimensions} vectors`, "INVALID_ARGUMENT");
        }
        if (keys.length === 0) return;
        await this.request({op: "add", keys, vectors, threads: this.threads},
            options.transfer ? [keys.buffer as ArrayBuffer, vectors.buffer as ArrayBuffer] : []);
    }

    /**
     * The `k` nearest neighbours of each query row (packed rows of `dimensions` floats): through the
     * HNSW graph, or with `exact` by scanning the attached flat vectors (see attachExact).
     */
    public async search(queries: Float32Array, k: number, options: {exact?: boolean} = {}): Promise<VectorMatches> {
        requirePositiveInteger("k", k, 100_000);
        this.requireRows(queries, "queries");
        const rows = queries.length / this.config.dimensions;
        if (rows === 0) return {k, keys: new BigUint64Array(0), distances: new Float32Array(0), counts: new Uint32Array(0)};
        if (options.exact && this.exactRows == null) {
            throw new SelfRagError("exact search needs the flat vectors (attachExact) and none are attached", "INVALID_STATE");
        }
        const value = await this.request({op: options.exact ? "exact" : "search", queries, k, threads: this.threads}) as Omit<VectorMatches, "k">;
        return {k, ...value};
    }

    /**
     * Attaches a vectors.f32 file (row r = key firstKey + r) for exact search: read into the
     * worker's memory with `load`, else scanned from the file a chunk at a time.
     */
    public async attachExact(file: string, options: {load: boolean, firstKey?: number}): Promise<number> {
        const reply = await this.request({op: "attachExact", path: file, dimensions: this.config.dimensions, load: options.load,
            firstKey: options.firstKey ?? 1}) as {rows: number};
        this.exactRows = reply.rows;
        return reply.rows;
    }

    public async save(file: string): Promise<void> {
        await this.request({op: "save", path: file});
    }

    public async size(): Promise<number> {
        return (await this.request({op: "stats"}) as {size: number}).size;
    }

    /** Stops the worker (and unmaps a viewed file). Safe to call twice. */
    public async close(): Promise<void> {
        if (this.closed) return;
        this.closed = true;
        await this.worker.terminate();
        this.fail(new SelfRagError("the vector index is closed", "INDEX_CLOSED"));
    }

    private requireRows(vectors: Float32Array, name: string): void {
        if (!(vectors instanceof Float32Array)) {
            throw new SelfRagError(`${name} must be a Float32Array of rows of ${this.config.dimensions} floats`, "INVALID_ARGUMENT");
        }
        if (vectors.length % this.config.dimensions !== 0) {
            throw new SelfRagError(`${name} hold ${vectors.length} floats, not a whole number of ${this.config.dimensions}-dimensional rows`,
                "DIMENSION_MISMATCH");
        }
    }

    private request(message: RequestBody, transfer: ArrayBuffer[] = []): Promise<unknown> {
        if (this.closed || this.failure != null) {
            return Promise.reject(this.failure ?? new SelfRagError("the vector index is closed", "INDEX_CLOSED"));
        }
        const id = this.nextId++;
        return new Promise((resolve, reject) => {
            this.pending.set(id, {resolve, reject});
            if (this.pending.size === 1) this.worker.ref();
            this.worker.postMessage({...message, id}, transfer);
        });
    }

    private settle(reply: WorkerReply): void {
        const waiter = this.pending.get(reply.id);
        if (waiter == null) return;
        this.pending.delete(reply.id);
        if (this.pending.size === 0) this.worker.unref();
        if (reply.ok) waiter.resolve(reply.value);
        else waiter.reject(new SelfRagError(reply.message, reply.code));
    }

    private fail(error: Error): void {
        this.failure ??= error;
        for (const waiter of this.pending.values()) waiter.reject(error);
        this.pending.clear();
        this.worker.unref();
    }
}

function validateConfig(config: VectorIndexConfig): VectorIndexConfig {
    requirePositiveInteger("dimensions", config.dimensions, 65536);
    if (!VECTOR_DTYPES.includes(config.dtype)) {
        throw new SelfRagError(`unknown vector dtype "${String(config.dtype)}" (expected ${VECTOR_DTYPES.join(", ")})`, "INVALID_ARGUMENT");
    }
    requirePositiveInteger("connectivity", config.connectivity, 1024);
    requirePositiveInteger("expansionAdd", config.expansionAdd, 65536);
    requirePositiveInteger("expansionSearch", config.expansionSearch, 65536);
    return {...config};
}
