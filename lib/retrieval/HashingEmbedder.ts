import crypto from "node:crypto";
import {requireNumberInRange, requirePositiveInteger} from "../errors.js";
import type {Passage} from "../selfrag/prompts.js";
import {passageText, type Embedder, type EmbedderInfo} from "./Embedder.js";
import type {IdfTable} from "./IdfTable.js";
import {hashBigram, hashToken, lexicalTokens, mix32} from "./lexical.js";

export interface HashingEmbedderOptions {
    /** Vector length (384, like the small BGE/MiniLM models, so indexes have the same footprint). */
    dimensions?: number;
    /**
     * Weight of word bigrams ("new york") relative to single words (0.25; 0 turns them off). They
     * reward phrases, but every bigram also adds collision noise to the 384 slots: on generated
     * passages of random word order (where phrases cannot help), a query of two of a passage's rare
     * words found it first 11 times in 12 with words alone, 9 with bigrams at 0.25, 4 at full weight.
     */
    bigramWeight?: number;
    /** Corpus document frequencies; without them every word weighs 1. `index build` counts them. */
    idf?: IdfTable;
}

/** Bumped whenever the features or the hashing change: old indexes then fail the fingerprint check. */
const VERSION = 1;

/**
 * A lexical embedder that needs no model: the zero-download default. Each word and word bigram
 * (lower-cased, accents stripped) is hashed to one of `dimensions` slots with a hashed sign, and
 * weighted by sublinear term frequency (1 + ln tf) times idf when an idf table is given; the
 * vector is L2-normalised, so cosine similarity is a hashed TF-IDF cosine. Deterministic: the
 * same text gives the same vector on every machine.
 *
 * It matches words, not meanings ("car" does not find "automobile"); use a GGUF embedding model
 * (GgufEmbedder) for semantic retrieval. And 384 slots are few: a passage's hundred words share
 * them, so one rare word collides with some word of many other passages and a one-word query is
 * a lottery; two or three distinctive words, which accumulate only in the passage that has them
 * all, find it reliably.
 *
 * ```ts
 * const embedder = new HashingEmbedder({dimensions: 384});
 * const vector = await embedder.embedQueries(["capital of France"]); // Float32Array(384), unit length
 * ```
 */
export class HashingEmbedder implements Embedder {
    public readonly info: EmbedderInfo;
    public readonly dimensions: number;
    public readonly bigramWeight: number;
    /** The document frequencies the weights come from (undefined: every word weighs 1). */
    public readonly idf?: IdfTable;

    public constructor(options: HashingEmbedderOptions = {}) {
        this.dimensions = requirePositiveInteger("dimensions", options.dimensions ?? 384, 65536);
        this.bigramWeight = requireNumberInRange("bigramWeight", options.bigramWeight ?? 0.25, 0, 100);
        this.idf = options.idf;
        const idfFingerprint = this.idf?.fingerprint() ?? "none";
        const settings = `hashing-v${VERSION}|dims=${this.dimensions}|bigrams=${this.bigramWeight}|idf=${idfFingerprint}`;
        this.info = {
            kind: "hashing",
            name: `hashing (${this.bigramWeight > 0 ? `words+bigrams x${this.bigramWeight}` : "words"}, ${this.idf != null
                ? `idf over ${this.idf.documents} passages` : "no idf"})`,
            dimensions: this.dimensions,
            fingerprint: crypto.createHash("sha256").update(settings).digest("hex"),
            details: {version: VERSION, bigramWeight: this.bigramWeight, idfDocuments: this.idf?.documents ?? null, idfFingerprint}
        };
    }

    public embedPassages(passages: readonly Passage[]): Promise<Float32Array> {
        return Promise.resolve(this.embedTexts(passages.map(passageText), "passage"));
    }

    public embedQueries(queries: readonly string[]): Promise<Float32Array> {
        return Promise.resolve(this.embedTexts(queries, "query"));
    }

    /**
     * Synchronous form of embedQueries/embedPassages (the work is plain arithmetic). The roles differ
     * in one point: with a complete idf table, query words that occur in no passage weigh 0.
     */
    public embedTexts(texts: readonly string[], role: "passage" | "query" = "passage"): Float32Array {
        const out = new Float32Array(texts.length * this.dimensions);
        for (let i = 0; i < texts.length; i++) this.embedInto(texts[i], out, i * this.dimensions, role);
        return out;
    }

    public dispose(): Promise<void> {
        return Promise.resolve();
    }

    private embedInto(text: string, out: Float32Array, offset: number, role: "passage" | "query"): void {
        const hashes = lexicalTokens(text).map(hashToken);
        // feature hash -> term frequency, and -> idf weight (a bigram weighs the mean of its words',
        // times bigramWeight).
        const tf = new Map<number, number>();
        const weight = new Map<number, number>();
        const add = (feature: number, w: number) => {
            const count = tf.get(feature);
            if (count == null) {
                tf.set(feature, 1);
                weight.set(feature, w);
            } else {
                tf.set(feature, count + 1);
            }
        };
        const table = this.idf;
        const idf = table == null ? () => 1 : role === "query" ? (h: number) => table.queryWeight(h) : (h: number) => table.weight(h);
        const idfs = hashes.map(idf);
        for (let i = 0; i < hashes.length; i++) {
            add(hashes[i], idfs[i]);
            if (this.bigramWeight > 0 && i > 0) {
                // A bigram with a word of no passage is in no passage either.
                const w = idfs[i - 1] === 0 || idfs[i] === 0 ? 0 : this.bigramWeight * (idfs[i - 1] + idfs[i]) / 2;
                add(hashBigram(hashes[i - 1], hashes[i]), w);
            }
        }
        const features: [number, number][] = [];
        for (const [feature, count] of tf) {
            const w = weight.get(feature)!;
            if (w !== 0) features.push([feature, (1 + Math.log(count)) * w]);
        }
        let sum = 0;
        for (const [feature, value] of features) {
            // The sign comes from a second mix of the hash so that colliding features cancel out on
            // average instead of piling up (the "signed" hashing trick).
            const sign = (mix32(feature ^ 0x9e3779b9) & 1) === 0 ? 1 : -1;
            out[offset + (feature % this.dimensions)] += sign * value;
        }
        for (let i = offset; i < offset + this.dimensions; i++) sum += out[i] * out[i];
        if (sum > 0) {
            const scale = 1 / Math.sqrt(sum);
            for (let i = offset; i < offset + this.dimensions; i++) out[i] *= scale;
        }
    }
}
