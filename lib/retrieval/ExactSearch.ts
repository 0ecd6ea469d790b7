// Exact (brute-force) cosine search over a file of f32 rows: the ground truth the search
// calibration measures HNSW against, and the search mode an index falls back to when its vectors
// have no neighbourhood structure a graph can exploit (then no ef reaches the target recall more
// cheaply than scanning everything).
//
// The file (`vectors.f32`) is the index's vectors in key order: row r holds key `firstKey + r`,
// little-endian f32, `dimensions` per row, no header (its length gives the rows; the manifest
// gives the dimensions). The scan itself is USearch's exactSearch (SIMD, multithreaded); for files
// not loaded into memory it runs over chunks and merges the per-chunk top k.
import fs from "node:fs";
import {createRequire} from "node:module";
import type Usearch from "usearch";
import {SelfRagError} from "../errors.js";

const requireModule = createRequire(import.meta.url);
let usearchModule: typeof Usearch | undefined;

/** USearch, loaded at the first scan: importing selfrag loads no native module (and USearch's binary lookup is slow to fail). */
function loadUsearch(): typeof Usearch {
    return usearchModule ??= (requireModule("usearch") as {default: typeof Usearch}).default;
}

/** Nearest rows of each query, `k` slots per query, the first counts[q] filled, best first. */
export interface ExactMatches {
    keys: BigUint64Array;
    distances: Float32Array;
    counts: Uint32Array;
}

/** Bytes read per chunk when the file is scanned from disk. */
const DEFAULT_CHUNK_BYTES = 256 * 1024 * 1024;

/** Appends rows to a vectors.f32 file as a build embeds them. */
export class FlatVectorWriter {
    private readonly fd: number;
    private rowCount = 0;
    private closed = false;

    public constructor(public readonly file: string, public readonly dimensions: number) {
        this.fd = fs.openSync(file, "w");
    }

    public get rows(): number {
        return this.rowCount;
    }

    public append(rows: Float32Array): void {
        if (rows.length % this.dimensions !== 0) {
            throw new SelfRagError(`${rows.length} floats are not whole rows of ${this.dimensions}`, "DIMENSION_MISMATCH");
        }
        const bytes = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
        let written = 0;
        while (written < bytes.length) written += fs.writeSync(this.fd, bytes, written);
        this.rowCount += rows.length / this.dimensions;
    }

    /** Idempotent: a second close must not close a descriptor number the process has reused. */
    public close(): void {
        if (this.closed) return;
        this.closed = true;
        fs.closeSync(this.fd);
    }
}

/** The rows of a vectors.f32 file, checked against its size. */
export function flatVectorRows(file: string, dimensions: number): number {
    if (!fs.existsSync(file)) throw new SelfRagError(`exact-search vectors not found: ${file}`, "INDEX_NOT_FOUND");
    const size = fs.statSync(file).size;
    const rowBytes = 4 * dimensions;
    if (size % rowBytes !== 0) {
        throw new SelfRagError(`${file} holds ${size} bytes, not a whole number of ${dimensions}-dimensional f32 rows (${rowBytes} bytes each)`,
            "INDEX_CORRUPT");
    }
    return size / rowBytes;
}

/** Reads the whole file into memory (for serving exact searches). */
export function loadFlatVectors(file: string, dimensions: number): Float32Array {
    const rows = flatVectorRows(file, dimensions);
    const data = new Float32Array(rows * dimensions);
    const fd = fs.openSync(file, "r");
    try {
        readFully(fd, new Uint8Array(data.buffer), 0);
    } finally {
        fs.closeSync(fd);
    }
    return data;
}

/**
 * A flat matrix of vectors searched exactly: either in memory or read from its file a chunk at a
 * time (the calibration's ground truth over an index larger than the memory one wants to spend).
 */
export class FlatVectors {
    private constructor(
        public readonly file: string,
        public readonly dimensions: number,
        public readonly rows: number,
        public readonly firstKey: number,
        private readonly data: Float32Array | undefined,
        private readonly chunkBytes: number
    ) {}

    public static open(file: string, dimensions: number, options: {load: boolean, firstKey: number, chunkBytes?: number}): FlatVectors {
        const rows = flatVectorRows(file, dimensions);
        return new FlatVectors(file, dimensions, rows, options.firstKey, options.load ? loadFlatVectors(file, dimensions) : undefined,
            options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    }

    public get loaded(): boolean {
        return this.data != null;
    }

    /** The `k` nearest rows of each query (packed rows), cosine distance, ties by key. */
    public search(queries: Float32Array, k: number, threads: number): ExactMatches {
        const count = queries.length / this.dimensions;
        const merged = new TopK(count, k);
        if (this.data != null) {
            merged.merge(scan(this.data, queries, this.dimensions, k, threads), this.firstKey);
            return merged.finish();
        }
        const chunkRows = Math.max(1, Math.floor(this.chunkBytes / (4 * this.dimensions)));
        const fd = fs.openSync(this.file, "r");
        try {
            for (let start = 0; start < this.rows; start += chunkRows) {
                const rows = Math.min(chunkRows, this.rows - start);
                const chunk = new Float32Array(rows * this.dimensions);
                readFully(fd, new Uint8Array(chunk.buffer), start * 4 * this.dimensions);
                merged.merge(scan(chunk, queries, this.dimensions, k, threads), this.firstKey + start);
            }
        } finally {
            fs.closeSync(fd);
        }
        return merged.finish();
    }
}

interface ScanResult {
    /** Row offsets within the scanned block. */
    rows: BigUint64Array;
    distances: Float32Array;
    /** Slots per query in `rows`. */
    k: number;
}

function scan(data: Float32Array, queries: Float32Array, dimensions: number, k: number, threads: number): ScanResult {
    const available = data.length / dimensions;
    const wanted = Math.min(k, available);
    if (wanted === 0) return {rows: new BigUint64Array(0), distances: new Float32Array(0), k: 0};
    const usearch = loadUsearch();
    const found = usearch.exactSearch(data, queries, dimensions, wanted, usearch.MetricKind.Cos, threads) as unknown as
        {keys: BigUint64Array, distances: Float32Array};
    // One query gives Matches (only the found entries), several give BatchMatches (wanted per row);
    // with exact search every slot is filled, so both are `wanted` per query.
    return {rows: found.keys, distances: found.distances, k: wanted};
}

/** Running top k per query over several scanned blocks. */
class TopK {
    private readonly keys: bigint[][];
    private readonly distances: number[][];

    public constructor(private readonly queries: number, private readonly k: number) {
        this.keys = Array.from({length: queries}, () => []);
        this.distances = Array.from({length: queries}, () => []);
    }

    public merge(block: ScanResult, firstKey: number): void {
        const base = BigInt(firstKey);
        for (let q = 0; q < this.queries; q++) {
            const keys = this.keys[q];
            const distances = this.distances[q];
            for (let i = 0; i < block.k; i++) {
                keys.push(block.rows[q * block.k + i] + base);
                // A zero vector has no direction: its cosine distance comes out NaN; it ranks last.
                const d = block.distances[q * block.k + i];
                distances.push(Number.isNaN(d) ? Number.POSITIVE_INFINITY : d);
            }
            if (keys.length > this.k) {
                const order = keys.map((_, i) => i).sort((a, b) => distances[a] - distances[b] || (keys[a] < keys[b] ? -1 : 1));
                const keptKeys = order.slice(0, this.k).map((i) => keys[i]);
                const keptDistances = order.slice(0, this.k).map((i) => distances[i]);
                this.keys[q] = keptKeys;
                this.distances[q] = keptDistances;
            }
        }
    }

    public finish(): ExactMatches {
        const keys = new BigUint64Array(this.queries * this.k);
        const distances = new Float32Array(this.queries * this.k);
        const counts = new Uint32Array(this.queries);
        for (let q = 0; q < this.queries; q++) {
            const order = this.keys[q].map((_, i) => i)
                .sort((a, b) => this.distances[q][a] - this.distances[q][b] || (this.keys[q][a] < this.keys[q][b] ? -1 : 1));
            counts[q] = order.length;
            order.forEach((i, slot) => {
                keys[q * this.k + slot] = this.keys[q][i];
                distances[q * this.k + slot] = this.distances[q][i];
            });
        }
        return {keys, distances, counts};
    }
}

function readFully(fd: number, into: Uint8Array, position: number): void {
    let done = 0;
    while (done < into.length) {
        const n = fs.readSync(fd, into, done, into.length - done, position + done);
        if (n === 0) throw new SelfRagError("exact-search vectors file ended early (changed while in use?)", "INDEX_CORRUPT");
        done += n;
    }
}
