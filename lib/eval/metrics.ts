// The evaluation metrics of the Self-RAG scripts, and ALCE's str-em for ASQA.
import {profileStrategy, type Profile, type ProfileStrategy} from "../selfrag/profiles.js";

/**
 * The prediction clean-up before scoring, as the short-form script does it: a leading "#" or ":"
 * is dropped; SUPPORTS / REFUTES become "true" / "false" (the model says SUPPORTS / REFUTES, the
 * PubHealth gold says true / false). The default profile maps them for `fever` only; the
 * reference profile maps them for every task scored with `match`, as the script does (a PopQA
 * prediction "REFUTES Paris" becomes "false").
 */
export function scoredPrediction(prediction: string, task: string, options: {profile?: Profile | ProfileStrategy, metric?: MetricName} = {}): string {
    let pred = prediction;
    if (pred.startsWith("#") || pred.startsWith(":")) pred = pred.slice(1);
    const mapped = profileStrategy(options.profile).mapsSupportLabels(task, options.metric ?? "match");
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

/** SQuAD's exact match: the normalised prediction equals a normalised gold (FlashRAG's `em`). */
export function exactMatch(prediction: string, golds: readonly string[]): number {
    const p = normalizeAnswer(prediction);
    return golds.some((gold) => normalizeAnswer(gold) === p) ? 1 : 0;
}

/**
 * SQuAD's token F1, the best over the golds: precision and recall of the normalised prediction's
 * tokens against a normalised gold's, counted with multiplicity (FlashRAG's `f1`). Both empty: 1.
 */
export function tokenF1(prediction: string, golds: readonly string[]): number {
    const p = normalizeAnswer(prediction).split(" ").filter((t) => t !== "");
    let best = 0;
    for (const gold of golds) {
        const g = normalizeAnswer(gold).split(" ").filter((t) => t !== "");
        if (p.length === 0 || g.length === 0) {
            best = Math.max(best, p.length === g.length ? 1 : 0);
            continue;
        }
        const counts = new Map<string, number>();
        for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
        let common = 0;
        for (const t of p) {
            const n = counts.get(t) ?? 0;
            if (n > 0) {
                common++;
                counts.set(t, n - 1);
            }
        }
        if (common === 0) continue;
        const precision = common / p.length;
        const recall = common / g.length;
        best = Math.max(best, 2 * precision * recall / (precision + recall));
    }
    return best;
}

export type MetricName = "match" | "accuracy" | "str_em" | "em" | "f1";
export const METRICS: readonly MetricName[] = ["match", "accuracy", "str_em", "em", "f1"];
