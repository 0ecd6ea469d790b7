// Segment scoring on the GPU: one thread per candidate runs critique_math.h's ScoreCandidate (the
// CPU scorer's own code) over the candidates' tokens, log-probs and reflection rows, uploaded in
// one batch.
#include <cuda_runtime.h>

#include "critique_math.h"
#include "cuda_kernels.h"
#include "device_buffer.cuh"

namespace selfrag {
namespace cuda {
namespace {

constexpr int kScoreThreads = 128;

__global__ void ScoreCandidatesKernel(const int32_t* __restrict__ offsets, int32_t n, const int32_t* __restrict__ tokens,
                                      const float* __restrict__ logprobs, const float* __restrict__ reflection,
                                      const int32_t* __restrict__ reflectionIds, int32_t nIds, ScoreWeights weights,
                                      double* __restrict__ out) {
    const int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int32_t begin = offsets[i];
    hd::WriteScore(hd::ScoreCandidate(tokens + begin, logprobs + begin, reflection + static_cast<int64_t>(begin) * nIds,
                                      offsets[i + 1] - begin, reflectionIds, nIds, weights, ReflectionLayout()),
                   out + static_cast<int64_t>(i) * 5);
}

}  // namespace

std::string ScoreCandidates(const int32_t* offsets, int32_t n, const int32_t* tokens, const float* logprobs,
                            const float* reflection, const int32_t* reflectionIds, int32_t nIds,
                            const ScoreWeights& weights, double* out) {
    if (n == 0) return std::string();
    const size_t total = static_cast<size_t>(offsets[n]);
    DeviceBuffer<int32_t> dOffsets, dTokens, dIds;
    DeviceBuffer<float> dLogprobs, dReflection;
    DeviceBuffer<double> dOut;
    std::string error = dOffsets.Upload(offsets, static_cast<size_t>(n) + 1, "uploading candidate offsets");
    if (error.empty()) error = dTokens.Upload(tokens, total, "uploading tokens");
    if (error.empty()) error = dLogprobs.Upload(logprobs, total, "uploading log-probs");
    if (error.empty()) error = dReflection.Upload(reflection, total * static_cast<size_t>(nIds), "uploading reflection rows");
    if (error.empty()) error = dIds.Upload(reflectionIds, static_cast<size_t>(nIds), "uploading reflection ids");
    if (error.empty()) error = dOut.Allocate(static_cast<size_t>(n) * 5, "allocating scores");
    if (!error.empty()) return error;
    const unsigned blocks = static_cast<unsigned>((n + kScoreThreads - 1) / kScoreThreads);
    ScoreCandidatesKernel<<<blocks, kScoreThreads, 0, cudaStreamPerThread>>>(dOffsets.Get(), n, dTokens.Get(), dLogprobs.Get(),
                                                                          dReflection.Get(), dIds.Get(), nIds, weights, dOut.Get());
    error = dOut.Download(out, static_cast<size_t>(n) * 5, "downloading scores");
    return error.empty() ? Finish("the segment scoring kernel") : error;
}

}  // namespace cuda
}  // namespace selfrag
