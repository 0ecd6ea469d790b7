#include "reflection_kernel.h"

// GCC 12 flags its own AVX-512 headers (_mm512_undefined_*) as maybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "cuda/row_math.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SELFRAG_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace selfrag {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

RowSummary Finite(int32_t argmax, float best, double sum) {
    RowSummary s;
    s.argmax = argmax;
    s.maxLogit = best;
    s.logSum = static_cast<float>(std::log(sum));
    s.logSumExp = static_cast<float>(static_cast<double>(best) + std::log(sum));
    return s;
}

// Every row whose fast pass met a non-finite value (NaN, +-Infinity, or a sum that is not finite)
// is summarised here, one way for all instruction sets: the vector paths only detect such rows
// (NaN propagates through their sums) and hand them over, so they cannot disagree. The rules are
// those of cuda/row_math.h, which the CUDA kernel compiles too, so the GPU agrees as well.
static_assert(RowSummary::kOk == hd::kStatusOk && RowSummary::kNaN == hd::kStatusNaN &&
                  RowSummary::kNoFiniteLogit == hd::kStatusNoFiniteLogit,
              "RowSummary and hd::RowResult must use the same status codes");

RowSummary SummariseSpecial(const float* row, int32_t n) {
    hd::RowState state = hd::InitialState();
    for (int32_t i = 0; i < n; ++i) hd::Observe(state, row[i], i);
    double sum = 0.0;
    if (hd::NeedsSum(state)) {
        for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - state.max);
    }
    return FromRowResult(hd::Finish(state, sum));
}

// The fast passes are exact for finite rows; anything else goes to SummariseSpecial.
inline RowSummary FiniteOrSpecial(const float* row, int32_t n, int32_t argmax, float best, double sum) {
    if (!std::isfinite(best) || !std::isfinite(sum) || !(sum > 0.0)) return SummariseSpecial(row, n);
    return Finite(argmax, best, sum);
}

// Two passes (max/argmax, then sum of exp(x - max)) over a row that fits in L2 beat a one-pass
// online logsumexp, which needs two exponentials per element.
RowSummary SummariseScalar(const float* row, int32_t n) {
    float best = kNegInf;
    int32_t bestIndex = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (row[i] > best) {
            best = row[i];
            bestIndex = i;
        }
    }
    double sum = 0.0;
    for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - best);
    return FiniteOrSpecial(row, n, bestIndex, best, sum);
}

#ifdef SELFRAG_X86_DISPATCH
// exp(x - m) as 2^t with t = (x - m) * log2(e), t = n + f, |f| <= 1/2, 2^f by a degree-6
// minimax-style polynomial (relative error ~2e-7) and 2^n from the exponent bits. The difference
// comes first: x - m is exact near the maximum, where the terms that matter are, whereas
// x*log2(e) - m*log2(e) carries the rounding of m*log2(e) (1e-3 at |m| = 1e4) into every term.
// Inputs are at most 0 (m is the row maximum); below 2^-126 a term cannot move a sum that holds
// exp(0) = 1, so t is clamped there instead of producing a denormal or a wrapped exponent. The
// clamp is max(-126, t), operands in that order, so a NaN t stays NaN: a row with NaN or
// Infinity then has a NaN sum and goes to SummariseSpecial.
#define SELFRAG_EXP2_CONSTANTS                                 \
    constexpr float kLog2e = 1.44269504088896341f;             \
    constexpr float kMinT = -126.0f;                           \
    constexpr float kE0 = 1.0f;                                \
    constexpr float kE1 = 0.693147182f;                        \
    constexpr float kE2 = 0.240226507f;                        \
    constexpr float kE3 = 0.0555041087f;                       \
    constexpr float kE4 = 0.00961812911f;                      \
    constexpr float kE5 = 0.00133335581f;                      \
    constexpr float kE6 = 0.000154035304f;

// 2^t for t = (x - m) * log2(e) <= 0.
__attribute__((target("avx512f"))) inline __m512 ExpShifted512(__m512 x, __m512 m) {
    SELFRAG_EXP2_CONSTANTS
    __m512 t = _mm512_mul_ps(_mm512_sub_ps(x, m), _mm512_set1_ps(kLog2e));
    t = _mm512_max_ps(_mm512_set1_ps(kMinT), t);
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(kE6);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE0));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

__attribute__((target("avx512f"))) RowSummary SummariseAvx512(const float* row, int32_t n) {
    __m512 vmax = _mm512_set1_ps(kNegInf);
    __m512i vidx = _mm512_setzero_si512();
    __m512i cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(row + i);
        const __mmask16 greater = _mm512_cmp_ps_mask(x, vmax, _CMP_GT_OQ);
        vmax = _mm512_mask_mov_ps(vmax, greater, x);
        vidx = _mm512_mask_mov_epi32(vidx, greater, cur);
        cur = _mm512_add_epi32(cur, step);
    }
    alignas(64) float laneMax[16];
    alignas(64) int32_t laneIdx[16];
    _mm512_store_ps(laneMax, vmax);
    _mm512_store_si512(reinterpret_cast<__m512i*>(laneIdx), vidx);
    float best = kNegInf;
    int32_t bestIndex = 0;
    for (int l = 0; l < 16; ++l) {
        if (laneMax[l] > best || (laneMax[l] == best && laneIdx[l] < bestIndex)) {
            best = laneMax[l];
            bestIndex = laneIdx[l];
        }
    }
    for (; i < n; ++i) {
        if (row[i] > best) {
            best = row[i];
            bestIndex = i;
        }
    }

    const __m512 bias = _mm512_set1_ps(best);  // the row maximum m
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps();
    __m512 acc3 = _mm512_setzero_ps();
    i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_add_ps(acc0, ExpShifted512(_mm512_loadu_ps(row + i), bias));
        acc1 = _mm512_add_ps(acc1, ExpShifted512(_mm512_loadu_ps(row + i + 16), bias));
        acc2 = _mm512_add_ps(acc2, ExpShifted512(_mm512_loadu_ps(row + i + 32), bias));
        acc3 = _mm512_add_ps(acc3, ExpShifted512(_mm512_loadu_ps(row + i + 48), bias));
    }
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm512_add_ps(acc0, ExpShifted512(_mm512_loadu_ps(row + i), bias));
    }
    if (i < n) {
        const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 x = _mm512_maskz_loadu_ps(tail, row + i);
        acc1 = _mm512_mask_add_ps(acc1, tail, acc1, ExpShifted512(x, bias));
    }
    acc0 = _mm512_add_ps(acc0, acc2);
    acc1 = _mm512_add_ps(acc1, acc3);
    const float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    return FiniteOrSpecial(row, n, bestIndex, best, sum);
}

__attribute__((target("avx2,fma"))) inline __m256 ExpShifted256(__m256 x, __m256 m) {
    SELFRAG_EXP2_CONSTANTS
    __m256 t = _mm256_mul_ps(_mm256_sub_ps(x, m), _mm256_set1_ps(kLog2e));
    t = _mm256_max_ps(_mm256_set1_ps(kMinT), t);
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(kE6);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kE0));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// Pass 1 keeps only the maximum (four independent max chains, no index bookkeeping); the argmax is
// then the first element equal to it, found by a compare scan that stops at the first hit.
__attribute__((target("avx2,fma"))) RowSummary SummariseAvx2(const float* row, int32_t n) {
    __m256 m0 = _mm256_set1_ps(kNegInf);
    __m256 m1 = m0;
    __m256 m2 = m0;
    __m256 m3 = m0;
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(row + i + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(row + i + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(row + i + 24));
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + i));
    const int32_t vectorEnd = i;
    alignas(32) float maxLanes[8];
    _mm256_store_ps(maxLanes, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    float best = kNegInf;
    for (float lane : maxLanes) best = lane > best ? lane : best;
    for (int32_t j = vectorEnd; j < n; ++j) best = row[j] > best ? row[j] : best;

    int32_t bestIndex = 0;
    const __m256 target = _mm256_set1_ps(best);
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + j), target, _CMP_EQ_OQ));
        if (mask != 0) break;
    }
    for (; j < n; ++j) {
        if (row[j] == best) {
            bestIndex = j;
            break;
        }
    }

    const __m256 bias = _mm256_set1_ps(best);  // the row maximum m
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps();
    __m256 acc3 = _mm256_setzero_ps();
    i = 0;
    for (; i + 32 <= vectorEnd; i += 32) {
        acc0 = _mm256_add_ps(acc0, ExpShifted256(_mm256_loadu_ps(row + i), bias));
        acc1 = _mm256_add_ps(acc1, ExpShifted256(_mm256_loadu_ps(row + i + 8), bias));
        acc2 = _mm256_add_ps(acc2, ExpShifted256(_mm256_loadu_ps(row + i + 16), bias));
        acc3 = _mm256_add_ps(acc3, ExpShifted256(_mm256_loadu_ps(row + i + 24), bias));
    }
    for (; i + 8 <= vectorEnd; i += 8) {
        acc0 = _mm256_add_ps(acc0, ExpShifted256(_mm256_loadu_ps(row + i), bias));
    }
    acc0 = _mm256_add_ps(acc0, acc2);
    acc1 = _mm256_add_ps(acc1, acc3);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
    double sum = 0.0;
    for (float lane : lanes) sum += lane;
    for (; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - best);
    // A NaN can hide a lane's maximum from _mm256_max_ps (it returns its second operand), so
    // `best` is only trusted when the sum is finite, which a NaN in the row never leaves it.
    return FiniteOrSpecial(row, n, bestIndex, best, sum);
}
#endif

using SummariseFn = RowSummary (*)(const float*, int32_t);

struct KernelChoice {
    SummariseFn fn;
    const char* isa;
};

KernelChoice PickKernel() {
#ifdef SELFRAG_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {SummariseAvx512, "avx512f"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {SummariseAvx2, "avx2"};
#endif
    return {SummariseScalar, "scalar"};
}

// Chosen once: CPU features do not change while the process runs.
const KernelChoice& Kernel() {
    static const KernelChoice choice = PickKernel();
    return choice;
}

// Summarises rows [begin, end); returns the first invalid row (or -1) with its summary.
int64_t ExtractRange(SummariseFn fn, const float* logits, int64_t begin, int64_t end, int32_t vocab,
                     const int32_t* ids, int32_t nIds, int32_t* argmax, float* argmaxLogprob,
                     float* logSumExp, float* idLogprobs, RowSummary* bad) {
    int64_t firstBad = -1;
    for (int64_t r = begin; r < end; ++r) {
        const float* row = logits + r * static_cast<int64_t>(vocab);
        const RowSummary s = fn(row, vocab);
        float* out = idLogprobs + r * nIds;
        if (s.status != RowSummary::kOk) {
            if (firstBad < 0) {
                firstBad = r;
                *bad = s;
            }
            if (argmax != nullptr) argmax[r] = -1;
            if (argmaxLogprob != nullptr) argmaxLogprob[r] = kNaN;
            if (logSumExp != nullptr) logSumExp[r] = kNaN;
            for (int32_t k = 0; k < nIds; ++k) out[k] = kNaN;
            continue;
        }
        if (argmax != nullptr) argmax[r] = s.argmax;
        if (argmaxLogprob != nullptr) argmaxLogprob[r] = LogProbOf(s, s.maxLogit);
        if (logSumExp != nullptr) logSumExp[r] = s.logSumExp;
        for (int32_t k = 0; k < nIds; ++k) {
            const int32_t id = ids[k];
            out[k] = (id >= 0 && id < vocab) ? LogProbOf(s, row[id]) : kNegInf;
        }
    }
    return firstBad;
}

}  // namespace

RowSummary SummariseRow(const float* row, int32_t vocab) { return Kernel().fn(row, vocab); }

RowSummary FromRowResult(const hd::RowResult& r) {
    RowSummary s;
    s.status = r.status;
    s.argmax = r.argmax;
    s.maxLogit = r.maxLogit;
    s.logSum = r.logSum;
    s.logSumExp = r.logSumExp;
    s.posInf = r.posInf;
    s.badIndex = r.badIndex;
    return s;
}

float LogProbOf(const RowSummary& s, float x) {
    if (s.posInf > 0) return x == kPosInf ? 0.0f - s.logSum : kNegInf;  // 0 - 0 = +0, not -0, for one +Inf
    return (x - s.maxLogit) - s.logSum;
}

const char* InvalidRowReason(const RowSummary& s) {
    switch (s.status) {
        case RowSummary::kNaN: return "holds NaN";
        case RowSummary::kNoFiniteLogit: return "has every logit -Infinity";
        default: return "is valid";
    }
}

const char* KernelIsa() { return Kernel().isa; }

namespace {
bool KernelForIsa(const char* isa, SummariseFn* out);
}  // namespace

namespace {
bool KernelForIsa(const char* isa, SummariseFn* out) {
    if (isa == nullptr || std::strcmp(isa, "auto") == 0) {
        *out = Kernel().fn;
        return true;
    }
    if (std::strcmp(isa, "scalar") == 0) {
        *out = SummariseScalar;
        return true;
    }
#ifdef SELFRAG_X86_DISPATCH
    __builtin_cpu_init();
    if (std::strcmp(isa, "avx512f") == 0 && __builtin_cpu_supports("avx512f")) {
        *out = SummariseAvx512;
        return true;
    }
    if (std::strcmp(isa, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma")) {
        *out = SummariseAvx2;
        return true;
    }
#endif
    return false;
}
}  // namespace

ExtractStatus ExtractReflectionRowsWith(const char* isa, const float* logits, int64_t rows, int32_t vocab,
                                        const int32_t* ids, int32_t nIds, int32_t* argmax,
                                        float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                                        int threads) {
    ExtractStatus status;
    SummariseFn fn = nullptr;
    if (!KernelForIsa(isa, &fn)) return status;
    status.ran = true;
    // Starting a thread costs tens of microseconds; one row costs about ten, so only large
    // batches of rows are split.
    constexpr int64_t kRowsPerThread = 16;
    const int64_t useful = rows / kRowsPerThread;
    const int nThreads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, useful)));
    if (nThreads <= 1) {
        status.badRow = ExtractRange(fn, logits, 0, rows, vocab, ids, nIds, argmax, argmaxLogprob, logSumExp,
                                     idLogprobs, &status.badSummary);
        return status;
    }
    std::vector<std::thread> workers;
    workers.reserve(nThreads - 1);
    std::vector<int64_t> bad(static_cast<size_t>(nThreads), -1);
    std::vector<RowSummary> badSummary(static_cast<size_t>(nThreads));
    const int64_t chunk = (rows + nThreads - 1) / nThreads;
    for (int t = 1; t < nThreads; ++t) {
        const int64_t begin = t * chunk;
        const int64_t end = std::min(rows, begin + chunk);
        if (begin >= end) break;
        workers.emplace_back([&, t, begin, end] {
            bad[static_cast<size_t>(t)] = ExtractRange(fn, logits, begin, end, vocab, ids, nIds, argmax, argmaxLogprob,
                                                       logSumExp, idLogprobs, &badSummary[static_cast<size_t>(t)]);
        });
    }
    bad[0] = ExtractRange(fn, logits, 0, std::min(rows, chunk), vocab, ids, nIds, argmax, argmaxLogprob,
                          logSumExp, idLogprobs, &badSummary[0]);
    for (auto& worker : workers) worker.join();
    for (size_t t = 0; t < bad.size(); ++t) {
        if (bad[t] >= 0) {  // chunks are in row order: the first one with a bad row has the first bad row
            status.badRow = bad[t];
            status.badSummary = badSummary[t];
            break;
        }
    }
    return status;
}

}  // namespace selfrag
