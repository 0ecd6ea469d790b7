// Per-row arithmetic of the reflection extraction, shared by the CUDA kernel (nvcc, device) and
// the CPU (host compiler): what a logits row says, with one definition of NaN and Infinity.
// A row is reduced through RowState, whose Merge is commutative and associative (the maximum
// keeps the lowest index on ties; first NaN and first +Infinity are minima; +Infinity counts add),
// so any split of a row over threads, lanes or warps gives the same max, argmax and status; only
// the sum of exp(x - max) depends on the order, and the host test build replays the kernel's order.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define SELFRAG_HD __host__ __device__ __forceinline__
#else
#define SELFRAG_HD inline
#endif

namespace selfrag {
namespace hd {

// "No index yet": sorts after every real index, so min() keeps the first real one.
constexpr int32_t kNoIndex = 0x7fffffff;

struct RowState {
    float max;            // largest logit that is neither NaN nor +Infinity (-Infinity if none)
    int32_t argmax;       // its lowest index, kNoIndex while no finite logit was seen
    int32_t firstNaN;     // kNoIndex if none
    int32_t firstPosInf;  // kNoIndex if none
    int32_t posInf;       // how many logits are +Infinity
};

// Mirrors selfrag::RowSummary (reflection_kernel.h) field for field, in a header nvcc can read.
struct RowResult {
    int32_t status;  // 0 ok, 1 NaN, 2 every logit -Infinity
    int32_t argmax;  // -1 when invalid
    float maxLogit;
    float logSum;
    float logSumExp;
    int32_t posInf;
    int32_t badIndex;  // the first NaN, -1 otherwise
};

constexpr int32_t kStatusOk = 0;
constexpr int32_t kStatusNaN = 1;
constexpr int32_t kStatusNoFiniteLogit = 2;

SELFRAG_HD float PosInf() { return __builtin_huge_valf(); }
SELFRAG_HD float QuietNaN() { return __builtin_nanf(""); }
SELFRAG_HD int32_t MinIndex(int32_t a, int32_t b) { return a < b ? a : b; }

SELFRAG_HD RowState InitialState() { return RowState{-PosInf(), kNoIndex, kNoIndex, kNoIndex, 0}; }

// One logit x at index i. -Infinity entries are impossible tokens: they never become the maximum.
SELFRAG_HD void Observe(RowState& s, float x, int32_t i) {
    if (x != x) {
        s.firstNaN = MinIndex(s.firstNaN, i);
    } else if (x == PosInf()) {
        s.posInf += 1;
        s.firstPosInf = MinIndex(s.firstPosInf, i);
    } else if (x > s.max || (x == s.max && x > -PosInf() && i < s.argmax)) {
        s.max = x;
        s.argmax = i;
    }
}

SELFRAG_HD RowState Merge(RowState a, const RowState& b) {
    if (b.max > a.max || (b.max == a.max && b.argmax < a.argmax)) {
        a.max = b.max;
        a.argmax = b.argmax;
    }
    a.firstNaN = MinIndex(a.firstNaN, b.firstNaN);
    a.firstPosInf = MinIndex(a.firstPosInf, b.firstPosInf);
    a.posInf += b.posInf;
    return a;
}

// Whether the second pass (the sum of exp(x - max)) is needed: only finite rows have one.
SELFRAG_HD bool NeedsSum(const RowState& s) { return s.firstNaN == kNoIndex && s.posInf == 0 && s.argmax != kNoIndex; }

// One term of the sum. x - max is computed first (exact near the maximum, where the terms that
// matter are); -Infinity entries give 0.
SELFRAG_HD double ExpTerm(float x, float max) { return static_cast<double>(expf(x - max)); }

SELFRAG_HD RowResult Finish(const RowState& s, double sum) {
    RowResult r;
    r.posInf = 0;
    r.badIndex = -1;
    if (s.firstNaN != kNoIndex) {
        r.status = kStatusNaN;
        r.argmax = -1;
        r.badIndex = s.firstNaN;
        r.maxLogit = r.logSum = r.logSumExp = QuietNaN();
        return r;
    }
    if (s.posInf > 0) {  // +Infinity logits share all the probability
        r.status = kStatusOk;
        r.argmax = s.firstPosInf;
        r.maxLogit = r.logSumExp = PosInf();
        r.logSum = static_cast<float>(log(static_cast<double>(s.posInf)));
        r.posInf = s.posInf;
        return r;
    }
    if (s.argmax == kNoIndex) {
        r.status = kStatusNoFiniteLogit;
        r.argmax = -1;
        r.maxLogit = r.logSum = r.logSumExp = QuietNaN();
        return r;
    }
    r.status = kStatusOk;
    r.argmax = s.argmax;
    r.maxLogit = s.max;
    r.logSum = static_cast<float>(log(sum));
    r.logSumExp = static_cast<float>(static_cast<double>(s.max) + log(sum));
    return r;
}

// Log-probability of a token whose logit is x, in a valid row: (x - max) - logSum, not
// x - logSumExp (a logsumexp near -1e4 is stored only to 1e-3 as a float).
SELFRAG_HD float LogProbOf(const RowResult& r, float x) {
    if (r.posInf > 0) return x == PosInf() ? 0.0f - r.logSum : -PosInf();
    return (x - r.maxLogit) - r.logSum;
}

// The log-prob of token `id` (out of the vocabulary: -Infinity); NaN for an invalid row.
SELFRAG_HD float IdLogProb(const RowResult& r, const float* row, int32_t vocab, int32_t id) {
    if (r.status != kStatusOk) return QuietNaN();
    return (id >= 0 && id < vocab) ? LogProbOf(r, row[id]) : -PosInf();
}

}  // namespace hd
}  // namespace selfrag
