// Fused segment scoring: Self-RAG's critique of generated candidates (relevance, support,
// utility, length-normalised sequence log-prob and their weighted sum) for a batch of candidates
// in one call, in log space so that log-probs far below -100 never turn into 0/0.
#pragma once

#include <cstdint>

// ReflectionLayout, ScoreWeights, CandidateScore and the arithmetic itself, shared with the CUDA kernel.
#include "cuda/critique_math.h"

namespace selfrag {

// Candidates packed back to back (candidate i owns tokens [offsets[i], offsets[i + 1]), their
// log-probs and reflection rows of nIds each), scored into out (n x 5: score, relevance, support,
// utility, sequence). The CUDA kernel (cuda/segment_scorer.cu) runs the same per-candidate code.
void ScoreSegments(const int32_t* offsets, int64_t n, const int32_t* tokens, const float* logprobs, const float* reflection,
                   const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights, double* out);

}  // namespace selfrag
