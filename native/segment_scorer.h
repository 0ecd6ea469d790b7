// Fused segment scoring: Self-RAG's critique of a generated candidate (relevance, support,
// utility, length-normalised sequence log-prob and their weighted sum) for a batch of candidates
// in one call, in log space so that log-probs far below -100 never turn into 0/0; plus grouped
// top-k for beam selection.
#pragma once

#include <cstdint>
#include <vector>

namespace selfrag {

// Positions of the reflection tokens in a reflection row (the order of the Self-RAG table).
struct ReflectionLayout {
    int32_t irrelevant = 3;
    int32_t relevant = 4;
    int32_t utility[5] = {7, 8, 9, 10, 11};
    int32_t fullySupported = 12;
    int32_t partiallySupported = 13;
    int32_t noSupport = 14;
};

struct ScoreWeights {
    double relevance = 1.0;
    double support = 1.0;
    double utility = 0.5;
    bool useSequenceScore = true;
    // The reference long-form script reads utility with the isSup ids, so its utility term is 0.
    bool referenceLongFormUtility = false;
};

struct CandidateScore {
    double score = 0;
    double relevance = 0;
    double support = 0;
    double utility = 0;
    double sequence = 0;  // mean log-prob of the generated tokens
};

// One candidate: n generated tokens, their log-probs and n x nIds reflection log-probs.
// reflectionIds maps row positions to token ids (to recognise isSup / isUse tokens).
CandidateScore ScoreCandidate(const int32_t* tokens, const float* logprobs, const float* reflection, int32_t n,
                              const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights,
                              const ReflectionLayout& layout = ReflectionLayout());

}  // namespace selfrag
