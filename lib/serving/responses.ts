// The JSON shapes selfrag prints (CLI --json) and serves (HTTP): one place, so the API's result,
// `ask --json`, `search --json` and the server's answer are the same object.
import type {SearchHit} from "../retrieval/PassageIndex.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";

/**
 * A short-form answer as JSON: every field of the API's result, in the same shape, except the
 * trace (token ids and reflection rows, asked for with `traces: true` and saved apart).
 */
export function shortFormJson(result: ShortFormAnswer) {
    const {trace: _trace, ...rest} = result;
    return rest;
}

/** A long-form answer as JSON: the API's result as it is. */
export function longFormJson(result: LongFormAnswer) {
    return result;
}

/** `{"results": [{"id", "title", "text", "score"}]}`, best first. */
export function searchResultsJson(hits: readonly SearchHit[]) {
    return {results: hits.map((h) => ({id: h.id ?? null, title: h.title, text: h.text, score: h.score}))};
}
