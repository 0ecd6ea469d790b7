// Fused reflection log-prob extraction: one pass over a logits row yields everything Self-RAG
// needs from it (greedy token, its log-prob, logsumexp and the log-probs of the reflection ids),
// so no full-vocabulary row ever reaches JavaScript.
#pragma once

#include <cstdint>

#include "cuda/row_math.h"

namespace selfrag {

// What one row of logits says. Non-finite logits have one defined meaning on every code path:
//  - a NaN anywhere makes the row invalid (no log-softmax exists): `status` is kNaN and `badIndex`
//    the first NaN; the engine fails the work with NAN_LOGITS rather than pick a token from it;
//  - a row whose every logit is -Infinity is invalid too (kNoFiniteLogit: 0/0, no token possible);
//  - +Infinity logits take all the probability: with k of them, each has log-prob -log(k) and every
//    other token -Infinity; the argmax is the first +Infinity, logSumExp is +Infinity;
//  - -Infinity entries are impossible tokens (log-prob -Infinity) and change nothing else.
// Log-probs are (x - maxLogit) - logSum (see LogProbOf), not x - logSumExp: a logsumexp of -1e4 is
// only stored to 1e-3 as a float, while (x - max) and log(sum) keep full precision.
struct RowSummary {
    enum Status : int32_t { kOk = 0, kNaN = 1, kNoFiniteLogit = 2 };
    int32_t argmax = -1;    // first index of the largest logit (greedy choice); -1 when invalid
    float maxLogit = 0.0f;
    float logSumExp = 0.0f; // maxLogit + logSum
    float logSum = 0.0f;    // log(sum_j exp(logit_j - maxLogit)) (log(k) with k +Infinity logits)
    int32_t posInf = 0;     // how many logits are +Infinity
    int32_t status = kOk;
    int32_t badIndex = -1;  // the first NaN (kNaN)
};

// The same facts from the shared device arithmetic (cuda/row_math.h, which the CUDA kernel runs).
RowSummary FromRowResult(const hd::RowResult& r);

// The log-probability of a token whose logit is `x`, in a row summarised as `s` (valid rows only).
float LogProbOf(const RowSummary& s, float x);

// Why a row is invalid, for error messages ("holds NaN at index 17", "has every logit -Infinity").
const char* InvalidRowReason(const RowSummary& s);

// Summarise one row of `vocab` logits (vectorised; AVX-512 / AVX2 chosen at run time on x86-64).
RowSummary SummariseRow(const float* row, int32_t vocab);

// The outcome of ExtractReflectionRowsWith.
struct ExtractStatus {
    bool ran = false;         // false: this CPU cannot run the requested instruction set
    int64_t badRow = -1;      // the first invalid row (NaN or every logit -Infinity), -1 if none
    RowSummary badSummary;    // its summary (status, badIndex)
};

// For `rows` rows of `vocab` logits: argmax, log-prob of the argmax, logsumexp and the log-probs
// of `nIds` token ids per row (row-major rows x nIds), with an instruction set ("auto", "scalar",
// "avx2", "avx512f"; nullptr = auto) so every code path can be tested on one machine; `ran` is
// false when this CPU cannot run the requested one. An invalid row gets argmax -1 and NaN
// values, and the first one is reported in `badRow`. Rows are split over up to `threads` threads
// when the work is large enough to pay for them. (The engine summarises rows one at a time with
// SummariseRow; this is the kernel's standalone face for extractReflectionLogprobs.)
ExtractStatus ExtractReflectionRowsWith(const char* isa, const float* logits, int64_t rows, int32_t vocab,
                               const int32_t* ids, int32_t nIds, int32_t* argmax,
                               float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                               int threads);

// Name of the instruction set the dispatcher picked ("avx512f", "avx2", "scalar").
const char* KernelIsa();

}  // namespace selfrag
