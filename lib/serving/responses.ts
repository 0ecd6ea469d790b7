// The JSON shapes selfrag prints (CLI --json) and serves (HTTP): one place, so `ask --json`,
// `search --json` and the server answer alike.
import type {SearchHit} from "../retrieval/PassageIndex.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";

/** A short-form answer without its internals (trace, token ids): what a caller reads. */
export function shortFormJson(result: ShortFormAnswer) {
    return {
        answer: result.answer,
        retrieve: result.retrieve,
        candidates: result.candidates.map((c) => ({
            passage: c.passage ?? null, text: c.text, score: c.score, relevance: c.relevance, support: c.support,
            utility: c.utility, seq: c.seq
        })),
        best: result.best,
        ...(result.votes != null ? {votes: result.votes} : {}),
        warnings: result.warnings,
        stats: result.stats
    };
}

/** `{"results": [{"id", "title", "text", "score"}]}`, best first. */
export function searchResultsJson(hits: readonly SearchHit[]) {
    return {results: hits.map((h) => ({id: h.id ?? null, title: h.title, text: h.text, score: h.score}))};
}
