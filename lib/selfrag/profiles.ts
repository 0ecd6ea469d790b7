import {invalidParameterError} from "../errors.js";
import type {CritiqueWeights} from "./SegmentScorer.js";

/**
 * Which behaviour the string-level details follow.
 * - "default": ours: answers trimmed, every reflection token removed, ARC's fifth choice kept,
 *   contexts built from token ids, the critique of a segment read up to its retrieval request.
 * - "reference": the released Self-RAG scripts (`run_short_form.py`, `run_long_form_static.py`),
 *   string for string, their bugs included, so published numbers can be reproduced. The README's
 *   "Differences from the reference scripts" table lists every point.
 */
export type Profile = "default" | "reference";

export const PROFILES: readonly Profile[] = ["default", "reference"];

export function checkProfile(value: unknown): Profile {
    if (value === undefined) return "default";
    if (value !== "default" && value !== "reference") throw invalidParameterError("profile", `"default" or "reference"`, value);
    return value;
}

/** Defaults of a short-form run per profile: the reference's are the script's argument defaults. */
export const SHORT_FORM_DEFAULTS = {
    default: {ndocs: 5, maxNewTokens: 100, retrieveRatio: "probability", weights: {} as CritiqueWeights},
    // run_short_form.py: --ndocs 10, --max_new_tokens 15, --w_use 1.0, use_seqscore / use_groundness
    // / use_utility off unless flagged, and the threshold applied to log-probabilities.
    reference: {ndocs: 10, maxNewTokens: 15, retrieveRatio: "reference-logprob",
        weights: {relevance: 1, support: 1, utility: 1, useSequenceScore: false, useSupport: false, useUtility: false} as CritiqueWeights}
} as const;

/** Defaults of a long-form run per profile. */
export const LONG_FORM_DEFAULTS = {
    default: {ndocs: 5, maxNewTokens: 100, weights: {} as CritiqueWeights},
    // run_long_form_static.py: --ndocs 10, --max_new_tokens 15; its generate() fixes w_rel 1, w_sup 1,
    // w_use 0.5, never passes use_seqscore to the scorer, and reads the utility term with the
    // support token ids (always 0); the support term counts only with --use_grounding.
    reference: {ndocs: 10, maxNewTokens: 15,
        weights: {relevance: 1, support: 1, utility: 0.5, useSequenceScore: false, useSupport: false, useUtility: false,
            referenceLongFormUtility: true} as CritiqueWeights}
} as const;

/** Explicit weights over a profile's defaults (undefined fields keep the default). */
export function weightsOver(defaults: CritiqueWeights, given: CritiqueWeights | undefined): CritiqueWeights {
    const out: CritiqueWeights = {...defaults};
    for (const [key, value] of Object.entries(given ?? {})) if (value !== undefined) (out as Record<string, unknown>)[key] = value;
    return out;
}
