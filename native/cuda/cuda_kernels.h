// The CUDA kernels' host-side face: reflection extraction over logits rows and segment scoring
// over candidates. Compiled into the cuda variant when nvcc is present (cuda_kernels.cu); every
// other build links no_cuda_kernels.cpp, which reports why there is no device path. Functions
// return an empty string on success, else the reason (a CUDA error, no device), never throw:
// the addon turns a reason into a JavaScript exception with a code.
#pragma once

#include <cstdint>
#include <string>

#include "critique_math.h"
#include "row_math.h"

namespace selfrag {
namespace cuda {

// Threads per block of the extraction kernel (one block per row); the host replay in
// host_replay.h reduces in the same order.
constexpr int kExtractThreads = 256;
constexpr int kWarpSize = 32;

struct DeviceInfo {
    bool built = false;      // this addon holds the CUDA kernels
    bool available = false;  // ... and a CUDA device can run them
    int deviceCount = 0;
    std::string name;        // device 0
    int computeMajor = 0;
    int computeMinor = 0;
    std::string reason;      // why not available
    std::string archs;       // the architectures compiled in ("75;80;86;89;90")
};

// Everything about the device (its properties too): for cudaDevice(), not per call.
DeviceInfo QueryDevice();
// Whether a device can run the kernels, and if not why: the cheap check done before each call.
bool DeviceAvailable(std::string* why);

// Rows of `vocab` logits already on the device, `rowStride` floats apart (llama.cpp's output
// tensor). Results go to host arrays, as ExtractReflectionRowsWith's; `perRow` (optional) gets
// every row's full result. `badRow` is the first invalid row or -1, with its result in `bad`.
std::string ExtractRowsOnDevice(const float* deviceLogits, int64_t rows, int32_t vocab, int64_t rowStride,
                                const int32_t* ids, int32_t nIds, int32_t* argmax, float* argmaxLogprob,
                                float* logSumExp, float* idLogprobs, int64_t* badRow, hd::RowResult* bad,
                                hd::RowResult* perRow = nullptr);

// The same from host rows: one upload of the whole batch, the kernel, one download of the summaries.
std::string ExtractRowsFromHost(const float* logits, int64_t rows, int32_t vocab, const int32_t* ids, int32_t nIds,
                                int32_t* argmax, float* argmaxLogprob, float* logSumExp, float* idLogprobs,
                                int64_t* badRow, hd::RowResult* bad, hd::RowResult* perRow = nullptr);

// Candidates packed back to back (candidate i owns [offsets[i], offsets[i+1])), host arrays in,
// host scores out (n x 5: score, relevance, support, utility, sequence).
std::string ScoreCandidates(const int32_t* offsets, int32_t n, const int32_t* tokens, const float* logprobs,
                            const float* reflection, const int32_t* reflectionIds, int32_t nIds,
                            const ScoreWeights& weights, double* out);

}  // namespace cuda
}  // namespace selfrag
