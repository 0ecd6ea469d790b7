import {SelfRagError, requireNumberInRange} from "../errors.js";
import {loadEngine} from "../engine/addon.js";
import type {NativeAddon, NativeScoreWeights} from "../engine/types.js";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";

/** Self-RAG's critique weights (docs/self-rag.md, "What is read from the model"); paper defaults 1, 1, 0.5, sequence score on. */
export interface CritiqueWeights {
    /** w_rel (default 1) */
    relevance?: number;
    /** w_sup (default 1) */
    support?: number;
    /** w_use (default 0.5) */
    utility?: number;
    /** add exp(mean token log-prob) (default true) */
    useSequenceScore?: boolean;
    /** Reproduce the reference long-form script, whose utility term is always 0 (default false). */
    referenceLongFormUtility?: boolean;
    /** Count the support term at all (the scripts' `--use_groundness`; default true, reference profile false). */
    useSupport?: boolean;
    /** Count the utility term at all (the scripts' `--use_utility`; default true, reference profile false). */
    useUtility?: boolean;
}

export interface CritiqueScore {
    score: number;
    relevance: number;
    support: number;
    utility: number;
    /** mean log-prob of the generated tokens (EOS included when generated) */
    seq: number;
}

/** What the scorer reads from a generated candidate. */
export interface ScoredSegment {
    tokens: Int32Array;
    logprobs: Float32Array;
    /** tokens.length x 15 reflection log-probs */
    reflection: Float32Array;
}

export function resolveWeights(weights: CritiqueWeights = {}): NativeScoreWeights {
    // A term the scripts do not read (their use flags off) weighs 0: its score is 0 there.
    const support = requireNumberInRange("weights.support", weights.support ?? 1, -1e6, 1e6);
    const utility = requireNumberInRange("weights.utility", weights.utility ?? 0.5, -1e6, 1e6);
    return {
        relevance: requireNumberInRange("weights.relevance", weights.relevance ?? 1, -1e6, 1e6),
        support: weights.useSupport === false ? 0 : support,
        utility: weights.useUtility === false ? 0 : utility,
        useSequenceScore: weights.useSequenceScore ?? true,
        referenceLongFormUtility: weights.referenceLongFormUtility ?? false
    };
}

/**
 * Scores a batch of candidates in one native call (relevance at the first position, support and
 * utility at the first isSup / isUse token, the length-normalised sequence score and the weighted
 * sum), stable in log space.
 *
 * ```ts
 * const [best] = model.scorer.score(segments, {utility: 1}).map((s, i) => [s.score, i]).sort(...);
 * ```
 */
export class SegmentScorer {
    /** A scorer on a loaded addon (a model's: `model.scorer` is one). */
    public constructor(private readonly addon: NativeAddon, public readonly reflectionIds: Int32Array) {
        if (reflectionIds.length !== REFLECTION_COUNT) {
            throw new SelfRagError(`expected ${REFLECTION_COUNT} reflection ids, got ${reflectionIds.length}`, "INVALID_ARGUMENT");
        }
    }

    /** A scorer without a model (re-scoring saved traces): loads llama.cpp and the addon for this process. */
    public static async create(reflectionIds: Int32Array): Promise<SegmentScorer> {
        const {addon} = await loadEngine();
        return new SegmentScorer(addon, reflectionIds);
    }

    /** `reflectionIds` defaults to the scorer's; traces carry their own. */
    public score(segments: readonly ScoredSegment[], weights: CritiqueWeights = {}, reflectionIds = this.reflectionIds): CritiqueScore[] {
        if (reflectionIds.length !== REFLECTION_COUNT) {
            throw new SelfRagError(`expected ${REFLECTION_COUNT} reflection ids, got ${reflectionIds.length}`, "INVALID_ARGUMENT");
        }
        const offsets = new Int32Array(segments.length + 1);
        segments.forEach((s, i) => {
            if (s.logprobs.length !== s.tokens.length || s.reflection.length !== s.tokens.length * REFLECTION_COUNT) {
                throw new SelfRagError(`candidate ${i}: ${s.tokens.length} tokens need as many log-probs and ` +
                    `${s.tokens.length * REFLECTION_COUNT} reflection values (got ${s.logprobs.length} and ${s.reflection.length})`,
                "INVALID_ARGUMENT");
            }
            offsets[i + 1] = offsets[i] + s.tokens.length;
        });
        const total = offsets[segments.length];
        const tokens = new Int32Array(total);
        const logprobs = new Float32Array(total);
        const reflection = new Float32Array(total * REFLECTION_COUNT);
        segments.forEach((s, i) => {
            tokens.set(s.tokens, offsets[i]);
            logprobs.set(s.logprobs, offsets[i]);
            reflection.set(s.reflection, offsets[i] * REFLECTION_COUNT);
        });
        const out = this.addon.scoreSegments(offsets, tokens, logprobs, reflection, Int32Array.from(reflectionIds), resolveWeights(weights));
        return segments.map((_, i) => ({
            score: out[i * 5], relevance: out[i * 5 + 1], support: out[i * 5 + 2], utility: out[i * 5 + 3], seq: out[i * 5 + 4]
        }));
    }
}
