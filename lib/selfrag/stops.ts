// Stop strings (the plan's `stop`, OpenAI's `stop`). The engine stops a generation on token ids
// (EOS, a retrieval request, the budget), not on text, so a stop string is applied to a finished
// generation: it is cut after the token that completes the first stop string, as if the
// generation had stopped there, and everything computed from it (text, critique scores, token
// counts) is computed from the kept tokens only. The tokens generated after the stop still cost
// their decode steps.
import type {ScoredSegment} from "./SegmentScorer.js";

/** Where the first stop string occurs in `text` (the earliest start), or -1. */
export function firstStop(text: string, stop: readonly string[]): number {
    let at = -1;
    for (const s of stop) {
        const i = text.indexOf(s);
        if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at;
}

/**
 * A generation cut at its first stop string: the fewest leading tokens whose text contains a
 * stop string (the token completing it is kept, as a generation that stopped there would have
 * generated it), and their text up to where the stop string starts (the stop string itself is
 * not part of the text, as in OpenAI's API). Undefined when no stop string occurs.
 */
export function cutAtStop<S extends ScoredSegment>(segment: S, stop: readonly string[], detokenize: (tokens: Int32Array) => string):
    {segment: S, text: string} | undefined {
    const kept = stopPrefix(segment.tokens, stop, detokenize);
    if (kept == null) return undefined;
    const text = detokenize(segment.tokens.subarray(0, kept));
    const width = segment.reflection.length / segment.tokens.length;
    return {
        segment: {...segment, tokens: segment.tokens.subarray(0, kept), logprobs: segment.logprobs.subarray(0, kept),
            reflection: segment.reflection.subarray(0, kept * width)},
        text: text.slice(0, firstStop(text, stop))
    };
}

/** The fewest leading tokens whose text contains a stop string; undefined when the whole text has none. */
export function stopPrefix(tokens: Int32Array, stop: readonly string[], detokenize: (tokens: Int32Array) => string): number | undefined {
    const n = tokens.length;
    if (stop.length === 0 || n === 0 || firstStop(detokenize(tokens), stop) < 0) return undefined;
    // Binary search: a longer prefix's text extends a shorter one's.
    let lo = 1;
    let hi = n;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (firstStop(detokenize(tokens.subarray(0, mid)), stop) >= 0) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/** A text cut before its first stop string; `cut` says whether one occurred. */
export function cutTextAtStop(text: string, stop: readonly string[]): {text: string, cut: boolean} {
    const at = firstStop(text, stop);
    return at < 0 ? {text, cut: false} : {text: text.slice(0, at), cut: true};
}
