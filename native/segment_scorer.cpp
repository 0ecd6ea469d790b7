#include "segment_scorer.h"

namespace selfrag {

// The formulas live in cuda/critique_math.h, where the CUDA kernel compiles the same code.
CandidateScore ScoreCandidate(const int32_t* tokens, const float* logprobs, const float* reflection, int32_t n,
                              const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights,
                              const ReflectionLayout& layout) {
    return hd::ScoreCandidate(tokens, logprobs, reflection, n, reflectionIds, nIds, weights, layout);
}

}  // namespace selfrag
