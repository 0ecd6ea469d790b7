// Fused reflection log-prob extraction: one pass over a logits row yields everything Self-RAG
// needs from it (greedy token, its log-prob, logsumexp and the log-probs of the reflection ids),
// so no full-vocabulary row ever reaches JavaScript.
#pragma once

#include <cstdint>

namespace selfrag {

struct RowSummary {
    int32_t argmax;    // first index of the largest logit (greedy choice)
    float maxLogit;
    float logSumExp;   // log(sum_j exp(logit_j)), computed stably
};

// Summarise one row of `vocab` logits (vectorised; AVX-512 / AVX2 chosen at run time on x86-64).
RowSummary SummariseRow(const float* row, int32_t vocab);

// For `rows` rows of `vocab` logits: argmax, log-prob of the argmax, logsumexp and the log-probs
// of `nIds` token ids per row (row-major rows x nIds), with an instruction set ("auto", "scalar",
// "avx2", "avx512f"; nullptr = auto) so every code path can be tested on one machine; returns
// false when this CPU cannot run the requested one. Rows are split over up to `threads` threads
// when the work is large enough to pay for them. (The engine summarises rows one at a time with
// SummariseRow; this is the kernel's standalone face for extractReflectionLogprobs.)
bool ExtractReflectionRowsWith(const char* isa, const float* logits, int64_t rows, int32_t vocab,
                               const int32_t* ids, int32_t nIds, int32_t* argmax,
                               float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                               int threads);

// Name of the instruction set the dispatcher picked ("avx512f", "avx2", "scalar").
const char* KernelIsa();

}  // namespace selfrag
