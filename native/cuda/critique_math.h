// Per-candidate arithmetic of Self-RAG's critique score, shared by the CUDA segment-scoring
// kernel (nvcc, device) and the CPU scorer (segment_scorer.cpp): relevance, support and utility
// as probability-weighted shares of their reflection tokens, computed in log space shifted by the
// maximum so log-probs far below -100 never become 0/0, and the length-normalised sequence score.
#pragma once

#include <math.h>
#include <stdint.h>

#include "row_math.h"

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

namespace hd {

// sum_i w_i p_i / sum_i p_i for log-probs l_i, shifted by their maximum so nothing underflows.
SELFRAG_HD double WeightedShare(const float* row, const int32_t* positions, const double* w, int count) {
    double m = -static_cast<double>(PosInf());
    for (int i = 0; i < count; ++i) {
        const double l = static_cast<double>(row[positions[i]]);
        if (l > m) m = l;
    }
    if (m == -static_cast<double>(PosInf()) || m == static_cast<double>(PosInf())) return 0.0;
    double numerator = 0.0;
    double denominator = 0.0;
    for (int i = 0; i < count; ++i) {
        const double p = exp(static_cast<double>(row[positions[i]]) - m);
        numerator += w[i] * p;
        denominator += p;
    }
    return numerator / denominator;
}

SELFRAG_HD int32_t FirstPositionOf(const int32_t* tokens, int32_t n, const int32_t* ids, int count) {
    for (int32_t t = 0; t < n; ++t) {
        for (int i = 0; i < count; ++i) {
            if (tokens[t] == ids[i]) return t;
        }
    }
    return -1;
}

// One candidate: n generated tokens, their log-probs and n x nIds reflection log-probs;
// reflectionIds maps row positions to token ids (to find the isSup / isUse tokens).
SELFRAG_HD CandidateScore ScoreCandidate(const int32_t* tokens, const float* logprobs, const float* reflection, int32_t n,
                                         const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights,
                                         const ReflectionLayout& layout) {
    CandidateScore out;
    double sum = 0.0;
    for (int32_t t = 0; t < n; ++t) sum += logprobs[t];
    out.sequence = sum / (n > 1 ? n : 1);
    if (n > 0) {
        const int32_t relPositions[2] = {layout.relevant, layout.irrelevant};
        const double relWeights[2] = {1.0, 0.0};
        out.relevance = WeightedShare(reflection, relPositions, relWeights, 2);
    }
    const int32_t supPositions[3] = {layout.fullySupported, layout.partiallySupported, layout.noSupport};
    const int32_t supIds[3] = {reflectionIds[layout.fullySupported], reflectionIds[layout.partiallySupported],
                               reflectionIds[layout.noSupport]};
    const int32_t sup = FirstPositionOf(tokens, n, supIds, 3);
    if (sup >= 0) {
        const double supWeights[3] = {1.0, 0.5, 0.0};
        out.support = WeightedShare(reflection + static_cast<int64_t>(sup) * nIds, supPositions, supWeights, 3);
    }
    int32_t useIds[5];
    for (int i = 0; i < 5; ++i) useIds[i] = reflectionIds[layout.utility[i]];
    const int32_t use = FirstPositionOf(tokens, n, useIds, 5);
    if (use >= 0 && !weights.referenceLongFormUtility) {
        const double useWeights[5] = {-1.0, -0.5, 0.0, 0.5, 1.0};
        out.utility = WeightedShare(reflection + static_cast<int64_t>(use) * nIds, layout.utility, useWeights, 5);
    }
    out.score = (weights.useSequenceScore ? exp(out.sequence) : 0.0) + weights.relevance * out.relevance +
                weights.support * out.support + weights.utility * out.utility;
    return out;
}

// The five numbers of a candidate as the addon returns them: score, relevance, support, utility, sequence.
SELFRAG_HD void WriteScore(const CandidateScore& s, double* out) {
    out[0] = s.score;
    out[1] = s.relevance;
    out[2] = s.support;
    out[3] = s.utility;
    out[4] = s.sequence;
}

}  // namespace hd
}  // namespace selfrag
