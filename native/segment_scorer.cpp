#include "segment_scorer.h"

namespace selfrag {

// The formulas live in cuda/critique_math.h, where the CUDA kernel compiles the same code.
void ScoreSegments(const int32_t* offsets, int64_t n, const int32_t* tokens, const float* logprobs, const float* reflection,
                   const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights, double* out) {
    for (int64_t i = 0; i < n; ++i) {
        const int32_t begin = offsets[i];
        hd::WriteScore(hd::ScoreCandidate(tokens + begin, logprobs + begin, reflection + static_cast<int64_t>(begin) * nIds,
                                          offsets[i + 1] - begin, reflectionIds, nIds, weights, ReflectionLayout()),
                       out + i * 5);
    }
}

}  // namespace selfrag
