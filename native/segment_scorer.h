// Fused segment scoring: Self-RAG's critique of a generated candidate (relevance, support,
// utility, length-normalised sequence log-prob and their weighted sum) for a batch of candidates
// in one call, in log space so that log-probs far below -100 never turn into 0/0; plus grouped
// top-k for beam selection.
#pragma once

#include <cstdint>

// ReflectionLayout, ScoreWeights, CandidateScore and the arithmetic itself, shared with the CUDA kernel.
#include "cuda/critique_math.h"

namespace selfrag {

// One candidate: n generated tokens, their log-probs and n x nIds reflection log-probs.
// reflectionIds maps row positions to token ids (to recognise isSup / isUse tokens).
CandidateScore ScoreCandidate(const int32_t* tokens, const float* logprobs, const float* reflection, int32_t n,
                              const int32_t* reflectionIds, int32_t nIds, const ScoreWeights& weights,
                              const ReflectionLayout& layout = ReflectionLayout());

}  // namespace selfrag
