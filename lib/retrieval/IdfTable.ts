import crypto from "node:crypto";
import fs from "node:fs";
import {SelfRagError} from "../errors.js";
import {hashToken, lexicalTokens} from "./lexical.js";

const MAGIC = "SRIDF001";
const HEADER_BYTES = 24; // magic (8), buckets (u32), flags (u32: bit 0 = complete), documents (f64)
/** 2^20 buckets (4 MB of counts): rare words seldom share a bucket with a frequent one. */
export const IDF_BUCKETS = 1 << 20;

/**
 * Document frequencies of hashed words over a corpus (or a sample of it), giving the hashing
 * embedder BM25's idf weights. Without them every word weighs the same, and in 384 dimensions the
 * collisions of a passage's hundred common words drown the two rare words a query shares with
 * it; with them, rare words carry the vector.
 *
 * ```ts
 * const counter = IdfTable.counter();
 * for (const p of passages) counter.add(`${p.title} ${p.text}`);
 * const idf = counter.finish(true); // true: every passage was counted
 * const embedder = new HashingEmbedder({idf});
 * ```
 */
export class IdfTable {
    private constructor(
        /** Documents counted. */
        public readonly documents: number,
        /** Counted over the whole corpus (not a sample): a word with no count is in no passage. */
        public readonly complete: boolean,
        private readonly frequencies: Uint32Array
    ) {}

    public static counter(): IdfCounter {
        return new IdfCounter();
    }

    /** @internal used by IdfCounter and load(). */
    public static fromCounts(documents: number, complete: boolean, frequencies: Uint32Array): IdfTable {
        if (frequencies.length !== IDF_BUCKETS) throw new SelfRagError(`an idf table has ${IDF_BUCKETS} buckets, got ${frequencies.length}`, "INVALID_ARGUMENT");
        return new IdfTable(documents, complete, frequencies);
    }

    /** BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)): always positive, largest for unseen words. */
    public weight(tokenHash: number): number {
        const df = this.frequencies[tokenHash & (IDF_BUCKETS - 1)];
        return Math.log(1 + (this.documents - df + 0.5) / (df + 0.5));
    }

    /**
     * The weight of a query word: as weight(), except that a word the complete table never saw is
     * in no passage, so it can only add noise (through hash collisions) and weighs 0.
     */
    public queryWeight(tokenHash: number): number {
        if (this.complete && this.frequencies[tokenHash & (IDF_BUCKETS - 1)] === 0) return 0;
        return this.weight(tokenHash);
    }

    /** sha256 of the file contents: the embedder's identity includes it. */
    public fingerprint(): string {
        return crypto.createHash("sha256").update(this.serialise()).digest("hex");
    }

    public save(file: string): void {
        fs.writeFileSync(file, this.serialise());
    }

    public static load(file: string): IdfTable {
        if (!fs.existsSync(file)) throw new SelfRagError(`idf table not found: ${file}`, "INDEX_CORRUPT");
        const bytes = fs.readFileSync(file);
        if (bytes.length < HEADER_BYTES || bytes.toString("latin1", 0, 8) !== MAGIC) {
            throw new SelfRagError(`${file} is not a selfrag idf table (bad magic)`, "INDEX_CORRUPT");
        }
        const buckets = bytes.readUInt32LE(8);
        const complete = (bytes.readUInt32LE(12) & 1) === 1;
        const documents = bytes.readDoubleLE(16);
        if (buckets !== IDF_BUCKETS || bytes.length !== HEADER_BYTES + buckets * 4) {
            throw new SelfRagError(`${file}: expected ${IDF_BUCKETS} buckets (${HEADER_BYTES + IDF_BUCKETS * 4} bytes), ` +
                `found ${buckets} buckets in ${bytes.length} bytes`, "INDEX_CORRUPT");
        }
        // Copy into an aligned buffer: the file's bytes may start at any offset of a pooled Buffer.
        const frequencies = new Uint32Array(buckets);
        Buffer.from(frequencies.buffer).set(bytes.subarray(HEADER_BYTES));
        return new IdfTable(documents, complete, frequencies);
    }

    private serialise(): Buffer {
        const header = Buffer.alloc(HEADER_BYTES);
        header.write(MAGIC, 0, "latin1");
        header.writeUInt32LE(this.frequencies.length, 8);
        header.writeUInt32LE(this.complete ? 1 : 0, 12);
        header.writeDoubleLE(this.documents, 16);
        return Buffer.concat([header, Buffer.from(this.frequencies.buffer, this.frequencies.byteOffset, this.frequencies.byteLength)]);
    }
}

/** Counts in how many documents each hashed word occurs. */
export class IdfCounter {
    private readonly frequencies = new Uint32Array(IDF_BUCKETS);
    private readonly seen = new Set<number>();
    public documents = 0;

    public add(text: string): void {
        this.seen.clear();
        for (const token of lexicalTokens(text)) {
            const bucket = hashToken(token) & (IDF_BUCKETS - 1);
            if (this.seen.has(bucket)) continue;
            this.seen.add(bucket);
            if (this.frequencies[bucket] < 0xffffffff) this.frequencies[bucket]++;
        }
        this.documents++;
    }

    /** The table; `complete` when every passage of the corpus was counted (not a sample). */
    public finish(complete = true): IdfTable {
        return IdfTable.fromCounts(this.documents, complete, this.frequencies);
    }
}
