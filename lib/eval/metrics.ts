// The evaluation metrics of the Self-RAG scripts, and ALCE's str-em for ASQA.
import type {Profile} from "../selfrag/profiles.js";

/**
 * The prediction clean-up before scoring, as the short-form script does it: a leading "#" or ":"
 * is dropped; SUPPORTS / REFUTES become "true" / "false" (the model says SUPPORTS / REFUTES, the
 * PubHealth gold says true / false). The default profile maps them for `fever` only; the
 * "reference" profile maps them for every task scored with `match`, as the script does (a PopQA
 * prediction "REFUTES Paris" becomes "false").
 */
export function scoredPrediction(prediction: string, task: string, options: {profile?: Profile, metric?: MetricName} = {}): string {
    let pred = prediction;
    if (pred.startsWith("#") || pred.startsWith(":")) pred = pred.slice(1);
    const mapped = options.profile === "reference" ? (options.metric ?? "match") === "match" : task === "fever";
    if (mapped) {
        if (pred.includes("SUPPORTS")) pred = "true";
        else if (pred.includes("REFUTES")) pred = "false";
    }
    return pred;
}

/** `match` (the scripts' metric for PopQA, TriviaQA, PubHealth, ARC): 1 if any gold string occurs in the prediction, case-sensitive. */
export function match(prediction: string, golds: readonly string[]): number {
    return golds.some((gold) => prediction.includes(gold)) ? 1 : 0;
}

/** `accuracy`: 1 if the prediction equals a gold string (surrounding whitespace ignored). */
export function accuracy(prediction: string, golds: readonly string[]): number {
    const p = prediction.trim();
    return golds.some((gold) => gold.trim() === p) ? 1 : 0;
}

/** SQuAD's answer normalisation (lower case, no punctuation, no articles, single spaces), as ALCE uses it. */
export function normalizeAnswer(text: string): string {
    return text.toLowerCase()
        .replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, "")
        .replace(/\b(a|an|the)\b/g, " ")
        .split(/\s+/).filter((w) => w !== "").join(" ");
}

/**
 * ALCE's str-em for ASQA: the fraction of the question's disambiguations (qa_pairs) for which
 * some short answer occurs in the normalised output.
 */
export function strEm(output: string, qaPairs: readonly {short_answers: readonly string[]}[]): number {
    if (qaPairs.length === 0) return 0;
    const normalized = normalizeAnswer(output);
    const found = qaPairs.filter((pair) => pair.short_answers.some((a) => {
        const answer = normalizeAnswer(a);
        return normalized.includes(answer); // as in ALCE, an empty short answer counts as present
    }));
    return found.length / qaPairs.length;
}

export type MetricName = "match" | "accuracy" | "str_em";
export const METRICS: readonly MetricName[] = ["match", "accuracy", "str_em"];
