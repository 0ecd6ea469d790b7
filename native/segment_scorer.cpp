#include "segment_scorer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace selfrag {

namespace {

// sum_i w_i p_i / sum_i p_i for log-probs l_i, shifted by their maximum so nothing underflows.
double WeightedShare(const float* row, const int32_t* positions, const double* w, int count) {
    double m = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < count; ++i) m = std::max(m, static_cast<double>(row[positions[i]]));
    if (std::isinf(m)) return 0.0;
    double numerator = 0.0;
    double denominator = 0.0;
    for (int i = 0; i < count; ++i) {
        const double p = std::exp(static_cast<double>(row[positions[i]]) - m);
        numerator += w[i] * p;
        denominator += p;
    }
    return numerator / denominator;
}

int32_t FirstPositionOf(const int32_t* tokens, int32_t n, const int32_t* ids, int count) {
    for (int32_t t = 0; t < n; ++t) {
        for (int i = 0; i < count; ++i) {
            if (tokens[t] == ids[i]) return t;
        }
    }
    return -1;
}

}  // namespace

CandidateScore ScoreCandidate(const int32_t* tokens, const float* logprobs, const float* reflection, int32_t n,
                              const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights,
                              const ReflectionLayout& layout) {
    CandidateScore out;
    double sum = 0.0;
    for (int32_t t = 0; t < n; ++t) sum += logprobs[t];
    out.sequence = sum / std::max(n, 1);
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
    out.score = (weights.useSequenceScore ? std::exp(out.sequence) : 0.0) + weights.relevance * out.relevance +
                weights.support * out.support + weights.utility * out.utility;
    return out;
}

}  // namespace selfrag
