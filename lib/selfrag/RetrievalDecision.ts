import {requireNumberInRange, requireOneOf} from "../errors.js";
import {R} from "../engine/ReflectionTokens.js";
import {retrievalProbability} from "./scoring.js";

export type RetrievalMode = "adaptive" | "always" | "never";

/**
 * How the adaptive decision forms its ratio.
 * - "probability" (default, the paper): P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])).
 * - "reference-logprob": the short-form reference script's formula, which puts log-probabilities
 *   into the same ratio. Both are negative, so the ratio is |log P(ret)| / (|log P(ret)| +
 *   |log P(no ret)|): it grows as [Retrieval] becomes *less* likely, inverting the threshold's
 *   meaning. Offered only to reproduce the script's published numbers.
 */
export type RetrieveRatio = "probability" | "reference-logprob";

export interface RetrievalDecisionOptions {
    mode?: RetrievalMode;
    /** Retrieve when the ratio exceeds this (default 0.2). */
    threshold?: number;
    retrieveRatio?: RetrieveRatio;
}

export interface RetrievalDecision {
    decision: boolean;
    /** The ratio compared with the threshold (always reported, whatever the mode). */
    p: number;
}

export function checkRetrievalOptions(options: RetrievalDecisionOptions): Required<RetrievalDecisionOptions> {
    const mode = requireOneOf("mode", options.mode ?? "adaptive", ["adaptive", "always", "never"] as const);
    const retrieveRatio = requireOneOf("retrieveRatio", options.retrieveRatio ?? "probability", ["probability", "reference-logprob"] as const);
    return {mode, threshold: requireNumberInRange("threshold", options.threshold ?? 0.2, 0, 1), retrieveRatio};
}

/** The decision at the first generated position of the passage-free prompt (a reflection row). */
export function decideRetrieval(row: ArrayLike<number>, options: RetrievalDecisionOptions = {}): RetrievalDecision {
    return decide(row, checkRetrievalOptions(options));
}

/** The decision with settings already checked (a plan's). */
export function decide(row: ArrayLike<number>, {mode, threshold, retrieveRatio}: Readonly<Required<RetrievalDecisionOptions>>): RetrievalDecision {
    const logRet = row[R.retrieval];
    const logNo = row[R.noRetrieval];
    const p = retrieveRatio === "probability" ? retrievalProbability(logRet, logNo) : logRet / (logRet + logNo);
    const decision = mode === "always" ? true : mode === "never" ? false : p > threshold;
    return {decision, p};
}
