import {SelfRagError} from "../errors.js";
import type {Passage} from "../selfrag/prompts.js";

/**
 * What an index records about the embedder that built it. Two embedders produce comparable
 * vectors exactly when their `fingerprint`s are equal; the other fields are for messages.
 */
export interface EmbedderInfo {
    kind: "hashing" | "gguf";
    /** Human-readable: "hashing (words+bigrams x0.5, idf over 21015324 passages)" or the model's name. */
    name: string;
    dimensions: number;
    /** Stable identity of everything that changes the vectors (settings, weights, idf table). */
    fingerprint: string;
    /** Kind-specific details kept in the manifest (the model path, prefixes, the idf file...). */
    details: Record<string, unknown>;
}

/**
 * Turns passages and queries into L2-normalised vectors, `dimensions` floats per row, rows packed
 * one after another in one Float32Array (the layout USearch takes without a copy).
 *
 * ```ts
 * const embedder = new HashingEmbedder();
 * const vectors = await embedder.embedQueries(["who wrote hamlet"]); // Float32Array(384)
 * ```
 */
export interface Embedder {
    readonly info: EmbedderInfo;
    embedPassages(passages: readonly Passage[]): Promise<Float32Array>;
    embedQueries(queries: readonly string[]): Promise<Float32Array>;
    /** Frees native resources (a model, a context); a no-op for the hashing embedder. */
    dispose(): Promise<void>;
}

/** The text an embedder sees for a passage: title and text joined by a space, as Self-RAG's retriever does. */
export function passageText(passage: Passage): string {
    return passage.title !== "" ? `${passage.title} ${passage.text}` : passage.text;
}

/** Scales each row of `vectors` to unit length in place (rows of zeros stay zero). */
export function normaliseRows(vectors: Float32Array, dimensions: number): Float32Array {
    for (let start = 0; start < vectors.length; start += dimensions) {
        let sum = 0;
        for (let i = start; i < start + dimensions; i++) sum += vectors[i] * vectors[i];
        if (sum === 0) continue;
        const scale = 1 / Math.sqrt(sum);
        for (let i = start; i < start + dimensions; i++) vectors[i] *= scale;
    }
    return vectors;
}

/** Fails with EMBEDDER_MISMATCH, naming both embedders, unless `actual` makes the vectors `expected` made. */
export function requireSameEmbedder(expected: EmbedderInfo, actual: EmbedderInfo, where: string): void {
    if (expected.fingerprint === actual.fingerprint && expected.dimensions === actual.dimensions) return;
    throw new SelfRagError(
        `${where} was built with the embedder ${describe(expected)} but is being opened with ${describe(actual)}; ` +
        "their vectors are not comparable. Open it with the embedder it was built with, or rebuild it.",
        "EMBEDDER_MISMATCH");
}

function describe(info: EmbedderInfo): string {
    return `${info.kind} "${info.name}" (${info.dimensions} dims, fingerprint ${info.fingerprint.slice(0, 16)})`;
}
