// The string functions of the reference scripts' utils.py that shape long-form output, ported
// character for character (the reference profile, and `selfrag eval --output-format reference`).
import {REFERENCE_CONTROL_TOKENS} from "./answers.js";

/** utils.py `postprocess`: control tokens and `</s>` removed, then one leading space dropped. */
export function referencePostprocess(pred: string): string {
    let out = pred;
    for (const token of REFERENCE_CONTROL_TOKENS) out = out.split(token).join("");
    out = out.split("</s>").join("");
    if (out.length === 0) return "";
    return out[0] === " " ? out.slice(1) : out;
}

/**
 * utils.py `fix_spacing`: a space after `.`, `!` or `?` between two word characters
 * (`'Paris.It is'` gives `'Paris. It is'`). Python's `\w` on str is Unicode-aware, hence \p{L}\p{N}.
 */
export function fixSpacing(text: string): string {
    return text.replace(/(?<=[\p{L}\p{N}_])([.!?])(?=[\p{L}\p{N}_])/gu, "$1 ");
}

/** One path of the reference search, as `call_model_beam_batch` returns it (root first). */
export interface ReferencePath {
    /** `processed_pred` of each node (the root's is ""). */
    sentences: string[];
    /** `pred` of each node (the root's is "[Retrieval]"). */
    originals: string[];
    /** `ctx` of each node (the root's is null). */
    ctxs: (unknown | null)[];
}

/** `" ".join(processed_pred)`: the script's `final_prediction[i]` (note the leading space from the root). */
export function finalPrediction(path: ReferencePath): string {
    return path.sentences.join(" ");
}

/**
 * The ASQA / ELI5 output of `run_long_form_static.py`: if path 0 post-processes to nothing, path 1's
 * sentences and passages are used; each non-empty sentence not seen before becomes
 * `sentence[:-1] + " [k]. "` with k its position in the path (the root is 0, so the first segment
 * is [1], and a dropped repeat leaves a gap); then `fix_spacing`, and `.[Continue to Use Evidence]`
 * becomes `" [1]. "`. `docs` are the cited passages in order.
 */
export function referenceAlceOutput<Doc>(paths: readonly ReferencePath[]): {output: string, docs: Doc[]} {
    let sentences = paths[0].sentences;
    let ctxs = paths[0].ctxs;
    if (referencePostprocess(finalPrediction(paths[0])).length === 0 && paths.length > 1) {
        sentences = paths[1].sentences;
        ctxs = paths[1].ctxs;
    }
    let finalOutput = "";
    const docs: Doc[] = [];
    const seen: string[] = [];
    const n = Math.min(sentences.length, ctxs.length);
    for (let idx = 0; idx < n; idx++) {
        const sent = sentences[idx];
        if (sent.length === 0) continue;
        const processed = referencePostprocess(sent);
        if (seen.includes(processed)) continue;
        seen.push(processed);
        finalOutput += `${pySliceDropLast(processed)} [${idx}]. `;
        docs.push(ctxs[idx] as Doc);
    }
    if (finalOutput.length > 0 && finalOutput.endsWith(" ")) finalOutput = finalOutput.slice(0, -1);
    const output = fixSpacing(finalOutput).split(".[Continue to Use Evidence]").join(" [1]. ").split(". [1] ").join(" [1]. ");
    return {output, docs};
}

/** The FactScore output: `fix_spacing(postprocess(final_prediction[0]))`, no citations. */
export function referenceFactScoreOutput(paths: readonly ReferencePath[]): string {
    return fixSpacing(referencePostprocess(finalPrediction(paths[0])));
}

/** Python's `s[:-1]` on a string, by code point (a surrogate pair is one character there). */
function pySliceDropLast(s: string): string {
    const chars = Array.from(s);
    return chars.slice(0, -1).join("");
}
