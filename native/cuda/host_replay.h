// The extraction kernel's schedule replayed on the host: 256 "threads" observe a row in the
// kernel's strided order, warps merge by the same shuffle-down tree (offsets 16..1, every lane at
// once, a lane past the warp reading its own value as __shfl_down_sync does), then warp 0 merges
// the per-warp results. Every operation is row_math.h's, so this is the device code's arithmetic
// in the device's order, runnable and testable where there is no GPU (npm run test:cuda-host).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "critique_math.h"
#include "cuda_kernels.h"
#include "row_math.h"

namespace selfrag {
namespace cuda {

template <typename T, typename MergeFn>
T ReplayWarp(std::array<T, kWarpSize> lanes, MergeFn merge) {
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
        std::array<T, kWarpSize> next = lanes;
        for (int lane = 0; lane < kWarpSize; ++lane) {
            const int source = lane + offset < kWarpSize ? lane + offset : lane;
            next[lane] = merge(lanes[lane], lanes[source]);
        }
        lanes = next;
    }
    return lanes[0];
}

template <typename T, typename MergeFn>
T ReplayBlock(const std::array<T, kExtractThreads>& threads, const T& identity, MergeFn merge) {
    constexpr int kWarps = kExtractThreads / kWarpSize;
    std::array<T, kWarpSize> perWarp;
    perWarp.fill(identity);
    for (int w = 0; w < kWarps; ++w) {
        std::array<T, kWarpSize> lanes;
        for (int l = 0; l < kWarpSize; ++l) lanes[l] = threads[w * kWarpSize + l];
        perWarp[w] = ReplayWarp(lanes, merge);
    }
    return ReplayWarp(perWarp, merge);
}

// One row, as one block of ExtractRowsKernel computes it.
inline hd::RowResult ReplayRow(const float* row, int32_t vocab) {
    std::array<hd::RowState, kExtractThreads> states;
    for (int t = 0; t < kExtractThreads; ++t) {
        states[t] = hd::InitialState();
        for (int32_t i = t; i < vocab; i += kExtractThreads) hd::Observe(states[t], row[i], i);
    }
    const hd::RowState state = ReplayBlock(states, hd::InitialState(),
                                           [](const hd::RowState& a, const hd::RowState& b) { return hd::Merge(a, b); });
    double sum = 0.0;
    if (hd::NeedsSum(state)) {
        std::array<double, kExtractThreads> sums;
        for (int t = 0; t < kExtractThreads; ++t) {
            sums[t] = 0.0;
            for (int32_t i = t; i < vocab; i += kExtractThreads) sums[t] += hd::ExpTerm(row[i], state.max);
        }
        sum = ReplayBlock(sums, 0.0, [](double a, double b) { return a + b; });
    }
    return hd::Finish(state, sum);
}

// ExtractRowsFromHost computed by the replay: each row as its block computes it, then what
// thread 0 writes (argmax, its log-prob, logsumexp) and the block's reflection log-probs.
inline std::string ReplayExtractRows(const float* logits, int64_t rows, int32_t vocab, const int32_t* ids, int32_t nIds,
                                     int32_t* argmax, float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                                     int64_t* badRow, hd::RowResult* bad, hd::RowResult* perRow = nullptr) {
    *badRow = -1;
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = logits + r * static_cast<int64_t>(vocab);
        const hd::RowResult result = ReplayRow(row, vocab);
        const bool ok = result.status == hd::kStatusOk;
        if (argmax != nullptr) argmax[r] = ok ? result.argmax : -1;
        if (argmaxLogprob != nullptr) argmaxLogprob[r] = ok ? hd::LogProbOf(result, result.maxLogit) : hd::QuietNaN();
        if (logSumExp != nullptr) logSumExp[r] = ok ? result.logSumExp : hd::QuietNaN();
        if (perRow != nullptr) perRow[r] = result;
        for (int32_t k = 0; k < nIds; ++k) idLogprobs[r * nIds + k] = hd::IdLogProb(result, row, vocab, ids[k]);
        if (!ok && *badRow < 0) {
            *badRow = r;
            *bad = result;
        }
    }
    return std::string();
}

// ScoreCandidates computed by the replay: one "thread" per candidate, the kernel's body.
inline std::string ReplayScoreCandidates(const int32_t* offsets, int32_t n, const int32_t* tokens, const float* logprobs,
                                         const float* reflection, const int32_t* reflectionIds, int32_t nIds,
                                         const ScoreWeights& weights, double* out) {
    for (int32_t i = 0; i < n; ++i) {
        const int32_t begin = offsets[i];
        hd::WriteScore(hd::ScoreCandidate(tokens + begin, logprobs + begin, reflection + static_cast<int64_t>(begin) * nIds,
                                          offsets[i + 1] - begin, reflectionIds, nIds, weights, ReflectionLayout()),
                       out + static_cast<int64_t>(i) * 5);
    }
    return std::string();
}

}  // namespace cuda
}  // namespace selfrag
