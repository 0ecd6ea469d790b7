import {invalidParameterError} from "../errors.js";
import type {Task} from "./prompts.js";
import type {RetrieveRatio} from "./RetrievalDecision.js";
import type {CritiqueWeights} from "./SegmentScorer.js";

/**
 * Which behaviour the string-level details follow.
 * - "default": ours: answers trimmed, every reflection token removed, ARC's fifth choice kept,
 *   contexts built from token ids, the critique of a segment read up to its retrieval request.
 * - "reference": the released Self-RAG scripts (`run_short_form.py`, `run_long_form_static.py`),
 *   string for string, their bugs included, so published numbers can be reproduced. docs/evaluation.md's
 *   "Differences from the reference scripts" table lists every point.
 */
export type Profile = "default" | "reference";

/**
 * A profile as the flows use it: every point where the two behaviours differ is a field here, so
 * the flows, the prompts, the post-processing, the vote and the metrics read the strategy and
 * never compare profile names. The name is kept for output only.
 */
export interface ProfileStrategy {
    readonly name: Profile;
    /** Defaults of a short-form question: the reference's are `run_short_form.py`'s argument defaults. */
    readonly shortForm: {readonly ndocs: number, readonly maxNewTokens: number, readonly retrieveRatio: RetrieveRatio, readonly weights: Readonly<CritiqueWeights>};
    /** Defaults of a long-form question. */
    readonly longForm: {readonly ndocs: number, readonly maxNewTokens: number, readonly weights: Readonly<CritiqueWeights>};
    /** Tasks whose prompt lists the answer choices (`\nA: ...`). */
    readonly choiceTasks: ReadonlySet<Task>;
    /** Choices listed: A to E (default) or A to D (the script drops a fifth). */
    readonly listedChoices: 4 | 5;
    /** Tasks answered by a score vote over post-processed answers (with retrieval). */
    readonly closedSetTasks: ReadonlySet<Task>;
    /** The long-form script's ASQA / ELI5 instruction joined without the blank line. */
    readonly tightLongInstruction: boolean;
    /** The short-form script's post-processing (its control tokens in its order, nothing trimmed, no SUPPORTS mapping). */
    readonly scriptPostProcessing: boolean;
    /** The vote's key for an answer: trimmed (default) or as given (the script). */
    voteKey(answer: string): string;
    /** An open task that retrieved answers with the best candidate's raw text, reflection tokens kept (the script). */
    readonly rawRetrievedAnswer: boolean;
    /** SUPPORTS / REFUTES become true / false when scoring this task with this metric. */
    mapsSupportLabels(task: string, metric: string): boolean;
    /** ARC records: the gold is the answer key as given (the script) rather than mapped to a letter. */
    readonly goldKeyAsGiven: boolean;
    /** Long form runs the script's own search (ReferenceBeamSearch: string contexts, its bugs) rather than the tree search. */
    readonly scriptLongFormSearch: boolean;
}

const ARC_TASKS: ReadonlySet<Task> = new Set(["arc_c", "arc_easy", "obqa"]);

const DEFAULT_PROFILE: ProfileStrategy = Object.freeze({
    name: "default",
    shortForm: {ndocs: 5, maxNewTokens: 100, retrieveRatio: "probability", weights: {}},
    longForm: {ndocs: 5, maxNewTokens: 100, weights: {}},
    choiceTasks: ARC_TASKS,
    listedChoices: 5,
    closedSetTasks: new Set<Task>(["fever", "arc_c", "arc_easy", "obqa"]),
    tightLongInstruction: false,
    scriptPostProcessing: false,
    voteKey: (answer: string) => answer.trim(),
    rawRetrievedAnswer: false,
    mapsSupportLabels: (task: string) => task === "fever",
    goldKeyAsGiven: false,
    scriptLongFormSearch: false
} as const);

const REFERENCE_PROFILE: ProfileStrategy = Object.freeze({
    name: "reference",
    // run_short_form.py: --ndocs 10, --max_new_tokens 15, --w_use 1.0, use_seqscore / use_groundness
    // / use_utility off unless flagged, and the threshold applied to log-probabilities.
    shortForm: {ndocs: 10, maxNewTokens: 15, retrieveRatio: "reference-logprob",
        weights: {relevance: 1, support: 1, utility: 1, useSequenceScore: false, useSupport: false, useUtility: false}},
    // run_long_form_static.py: --ndocs 10, --max_new_tokens 15; its generate() fixes w_rel 1, w_sup 1,
    // w_use 0.5, never passes use_seqscore to the scorer, and reads the utility term with the
    // support token ids (always 0); the support term counts only with --use_grounding.
    longForm: {ndocs: 10, maxNewTokens: 15,
        weights: {relevance: 1, support: 1, utility: 0.5, useSequenceScore: false, useSupport: false, useUtility: false, referenceLongFormUtility: true}},
    // The script builds choices for arc_c only, A to D.
    choiceTasks: new Set<Task>(["arc_c"]),
    listedChoices: 4,
    // `closed=args.task in ["fever", "arc_c"]`
    closedSetTasks: new Set<Task>(["fever", "arc_c"]),
    tightLongInstruction: true,
    scriptPostProcessing: true,
    voteKey: (answer: string) => answer,
    rawRetrievedAnswer: true,
    // The script maps them for every task scored with match (a PopQA "REFUTES Paris" becomes "false").
    mapsSupportLabels: (_task: string, metric: string) => metric === "match",
    goldKeyAsGiven: true,
    scriptLongFormSearch: true
} as const);

const STRATEGIES: Readonly<Record<Profile, ProfileStrategy>> = Object.freeze({default: DEFAULT_PROFILE, reference: REFERENCE_PROFILE});

/** Both strategies by name. */
export const PROFILE_STRATEGIES = STRATEGIES;

export const PROFILES: readonly Profile[] = Object.freeze(Object.keys(STRATEGIES) as Profile[]);

/** The strategy of a profile name (default when none is given); refuses unknown names. */
export function profileStrategy(name: Profile | ProfileStrategy | undefined, option = "profile"): ProfileStrategy {
    if (name === undefined) return DEFAULT_PROFILE;
    if (typeof name === "object" && name !== null && STRATEGIES[name.name] === name) return name;
    if (typeof name !== "string" || !Object.hasOwn(STRATEGIES, name)) throw invalidParameterError(option, PROFILES.map((p) => JSON.stringify(p)).join(" | "), name);
    return STRATEGIES[name];
}

/** Defaults of a short-form run per profile (the strategies' `shortForm`). */
export const SHORT_FORM_DEFAULTS = Object.freeze({default: DEFAULT_PROFILE.shortForm, reference: REFERENCE_PROFILE.shortForm});

/** Defaults of a long-form run per profile (the strategies' `longForm`). */
export const LONG_FORM_DEFAULTS = Object.freeze({default: DEFAULT_PROFILE.longForm, reference: REFERENCE_PROFILE.longForm});

/** Explicit weights over a profile's defaults (undefined fields keep the default). */
export function weightsOver(defaults: Readonly<CritiqueWeights>, given: CritiqueWeights | undefined): CritiqueWeights {
    const out: CritiqueWeights = {...defaults};
    for (const [key, value] of Object.entries(given ?? {})) if (value !== undefined) (out as Record<string, unknown>)[key] = value;
    return out;
}
