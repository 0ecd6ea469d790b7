/**
 * How many leading tokens every one of these token arrays shares, leaving at least one token of
 * each after it (its last token's logits start that slot's generation). Sibling candidates share
 * more than their prompt: `[Retrieval]<paragraph>` always, often a title (passages of one article),
 * and in long form the whole path so far; decoding that once into all their slots is work saved
 * without changing what any slot holds.
 */
export function sharedPrefixLength(tokens: readonly Int32Array[]): number {
    if (tokens.length < 2) return 0;
    let common = tokens[0].length;
    for (const t of tokens.slice(1)) {
        let i = 0;
        while (i < common && i < t.length && t[i] === tokens[0][i]) i++;
        common = i;
    }
    return Math.max(0, Math.min(common, ...tokens.map((t) => t.length - 1)));
}
