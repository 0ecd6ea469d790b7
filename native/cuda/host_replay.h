// The extraction kernel's schedule replayed on the host: 256 "threads" observe a row in the
// kernel's strided order, warps merge by the same shuffle-down tree (offsets 16..1, every lane at
// once, a lane past the warp reading its own value as __shfl_down_sync does), then warp 0 merges
// the per-warp results. Every operation is row_math.h's, so this is the device code's arithmetic
// in the device's order, runnable and testable where there is no GPU (npm run test:cuda-host).
#pragma once

#include <array>
#include <cstdint>

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

}  // namespace cuda
}  // namespace selfrag
