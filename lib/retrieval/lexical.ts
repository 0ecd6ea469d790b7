// Tokenisation and hashing shared by the hashing embedder and its idf table: both must see the
// same tokens and the same hashes, or the weights would be looked up under the wrong words.

const WORD = /[\p{L}\p{N}]+/gu;
const MARKS = /\p{M}+/gu;

/**
 * Lower-cased words and numbers with diacritics stripped ("Zürich's" -> ["zurich", "s"]), so a
 * query matches a passage regardless of case and accents.
 */
export function lexicalTokens(text: string): string[] {
    return text.normalize("NFKD").replace(MARKS, "").toLowerCase().match(WORD) ?? [];
}

/** 32-bit FNV-1a over the UTF-16 code units, finished with murmur3's mixer so all bits are usable. */
export function hashToken(token: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < token.length; i++) {
        h ^= token.charCodeAt(i);
        h = Math.imul(h, 0x01000193);
    }
    return mix32(h);
}

/** A bigram's hash from its two words' hashes (no string concatenation on the hot path). */
export function hashBigram(first: number, second: number): number {
    return mix32(Math.imul(first, 0x9e3779b1) ^ second ^ 0x5bd1e995);
}

/** murmur3's fmix32: an avalanche mixer, every input bit flips about half the output bits. */
export function mix32(value: number): number {
    let h = value >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
}
