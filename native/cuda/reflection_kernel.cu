// Reflection extraction on the GPU: one block per logits row. Pass 1 reduces the row to a
// RowState (max with its lowest index, first NaN, +Infinity count) with warp shuffles, then across
// warps through shared memory; pass 2 sums exp(x - max) the same way (in double); thread 0
// finishes the row (row_math.h, the CPU's own rules) and the block writes the reflection
// log-probs. Only the compact summaries leave the device.
#include <cuda_runtime.h>

#include <vector>

#include "cuda_kernels.h"
#include "device_buffer.cuh"
#include "row_math.h"

namespace selfrag {
namespace cuda {
namespace {

static_assert(kExtractThreads % kWarpSize == 0 && kExtractThreads / kWarpSize <= kWarpSize,
              "the cross-warp step reduces one value per warp inside a single warp");

__device__ hd::RowState ShuffleDown(const hd::RowState& s, int offset) {
    hd::RowState o;
    o.max = __shfl_down_sync(0xffffffffu, s.max, offset);
    o.argmax = __shfl_down_sync(0xffffffffu, s.argmax, offset);
    o.firstNaN = __shfl_down_sync(0xffffffffu, s.firstNaN, offset);
    o.firstPosInf = __shfl_down_sync(0xffffffffu, s.firstPosInf, offset);
    o.posInf = __shfl_down_sync(0xffffffffu, s.posInf, offset);
    return o;
}

// Lane 0 ends with the merge of the warp's 32 states (tree: offsets 16, 8, 4, 2, 1).
__device__ hd::RowState WarpMerge(hd::RowState s) {
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) s = hd::Merge(s, ShuffleDown(s, offset));
    return s;
}

__device__ double WarpSum(double v) {
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

struct RowOut {
    int32_t argmax;
    float argmaxLogprob;
    float logSumExp;
    hd::RowResult result;
};

__global__ void __launch_bounds__(kExtractThreads) ExtractRowsKernel(const float* __restrict__ logits, int32_t vocab,
                                                                    int64_t rowStride, const int32_t* __restrict__ ids,
                                                                    int32_t nIds, RowOut* __restrict__ out,
                                                                    float* __restrict__ idLogprobs) {
    constexpr int kWarps = kExtractThreads / kWarpSize;
    __shared__ hd::RowState warpStates[kWarps];
    __shared__ double warpSums[kWarps];
    __shared__ hd::RowState rowState;
    __shared__ hd::RowResult rowResult;

    const int64_t r = blockIdx.x;
    const float* row = logits + r * rowStride;
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;

    hd::RowState s = hd::InitialState();
    for (int32_t i = threadIdx.x; i < vocab; i += kExtractThreads) hd::Observe(s, row[i], i);
    s = WarpMerge(s);
    if (lane == 0) warpStates[warp] = s;
    __syncthreads();
    if (warp == 0) {
        hd::RowState w = lane < kWarps ? warpStates[lane] : hd::InitialState();
        w = WarpMerge(w);
        if (lane == 0) rowState = w;
    }
    __syncthreads();
    const hd::RowState state = rowState;

    double sum = 0.0;
    if (hd::NeedsSum(state)) {
        for (int32_t i = threadIdx.x; i < vocab; i += kExtractThreads) sum += hd::ExpTerm(row[i], state.max);
        sum = WarpSum(sum);
        if (lane == 0) warpSums[warp] = sum;
        __syncthreads();
        if (warp == 0) {
            double w = lane < kWarps ? warpSums[lane] : 0.0;
            w = WarpSum(w);
            if (lane == 0) sum = w;
        }
    }
    if (threadIdx.x == 0) {
        const hd::RowResult result = hd::Finish(state, sum);
        rowResult = result;
        RowOut o;
        o.result = result;
        const bool ok = result.status == hd::kStatusOk;
        o.argmax = ok ? result.argmax : -1;
        o.argmaxLogprob = ok ? hd::LogProbOf(result, result.maxLogit) : hd::QuietNaN();
        o.logSumExp = ok ? result.logSumExp : hd::QuietNaN();
        out[r] = o;
    }
    __syncthreads();
    const hd::RowResult result = rowResult;
    for (int32_t k = threadIdx.x; k < nIds; k += kExtractThreads) {
        idLogprobs[r * nIds + k] = hd::IdLogProb(result, row, vocab, ids[k]);
    }
}

std::string RunExtraction(const float* deviceLogits, int64_t rows, int32_t vocab, int64_t rowStride, const int32_t* ids,
                          int32_t nIds, int32_t* argmax, float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                          int64_t* badRow, hd::RowResult* bad, hd::RowResult* perRow) {
    *badRow = -1;
    if (rows == 0) return std::string();
    if (rows > 0x7fffffff) return "too many rows for one launch";
    DeviceBuffer<int32_t> dIds;
    DeviceBuffer<RowOut> dOut;
    DeviceBuffer<float> dReflection;
    std::string error = dIds.Upload(ids, static_cast<size_t>(nIds), "uploading the reflection ids");
    if (error.empty()) error = dOut.Allocate(static_cast<size_t>(rows), "allocating row summaries");
    if (error.empty()) error = dReflection.Allocate(static_cast<size_t>(rows * nIds), "allocating reflection log-probs");
    if (!error.empty()) return error;
    ExtractRowsKernel<<<static_cast<unsigned>(rows), kExtractThreads, 0, cudaStreamPerThread>>>(
        deviceLogits, vocab, rowStride, dIds.Get(), nIds, dOut.Get(), dReflection.Get());
    std::vector<RowOut> out(static_cast<size_t>(rows));
    error = dOut.Download(out.data(), out.size(), "downloading row summaries");
    if (error.empty()) error = dReflection.Download(idLogprobs, static_cast<size_t>(rows * nIds), "downloading reflection log-probs");
    if (error.empty()) error = Finish("the reflection extraction kernel");
    if (!error.empty()) return error;
    for (int64_t r = 0; r < rows; ++r) {
        const RowOut& o = out[static_cast<size_t>(r)];
        if (argmax != nullptr) argmax[r] = o.argmax;
        if (argmaxLogprob != nullptr) argmaxLogprob[r] = o.argmaxLogprob;
        if (logSumExp != nullptr) logSumExp[r] = o.logSumExp;
        if (perRow != nullptr) perRow[r] = o.result;
        if (o.result.status != hd::kStatusOk && *badRow < 0) {
            *badRow = r;
            *bad = o.result;
        }
    }
    return std::string();
}

}  // namespace

std::string ExtractRowsOnDevice(const float* deviceLogits, int64_t rows, int32_t vocab, int64_t rowStride,
                                const int32_t* ids, int32_t nIds, int32_t* argmax, float* argmaxLogprob,
                                float* logSumExp, float* idLogprobs, int64_t* badRow, hd::RowResult* bad,
                                hd::RowResult* perRow) {
    // llama.cpp's tensor may live on any of its devices, and this addon's CUDA runtime (linked
    // statically) keeps its own current device: run where the rows are.
    cudaPointerAttributes attributes{};
    const cudaError_t where = cudaPointerGetAttributes(&attributes, deviceLogits);
    if (where != cudaSuccess) return Describe(where, "locating the logits on the device");
    if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
        return "the logits are not in device memory";
    }
    const cudaError_t set = cudaSetDevice(attributes.device);
    if (set != cudaSuccess) return Describe(set, "cudaSetDevice");
    return RunExtraction(deviceLogits, rows, vocab, rowStride, ids, nIds, argmax, argmaxLogprob, logSumExp, idLogprobs,
                         badRow, bad, perRow);
}

std::string ExtractRowsFromHost(const float* logits, int64_t rows, int32_t vocab, const int32_t* ids, int32_t nIds,
                                int32_t* argmax, float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                                int64_t* badRow, hd::RowResult* bad, hd::RowResult* perRow) {
    *badRow = -1;
    if (rows == 0) return std::string();
    DeviceBuffer<float> dLogits;
    const std::string error = dLogits.Upload(logits, static_cast<size_t>(rows) * static_cast<size_t>(vocab), "uploading logits");
    if (!error.empty()) return error;
    return RunExtraction(dLogits.Get(), rows, vocab, vocab, ids, nIds, argmax, argmaxLogprob, logSumExp, idLogprobs,
                         badRow, bad, perRow);
}

}  // namespace cuda
}  // namespace selfrag
