// Linked into every variant built without the CUDA kernels (the cpu and vulkan variants, and the
// cuda variant when nvcc was absent or failed at install): the device path does not exist here,
// and each entry point says why.
#include "cuda_kernels.h"

namespace selfrag {
namespace cuda {

namespace {
const char* kWhy =
    "this addon was built without the CUDA kernels (only the cuda variant holds them, built when nvcc is "
    "present at install; see the README's GPU section)";
}

DeviceInfo QueryDevice() {
    DeviceInfo info;
    info.reason = kWhy;
    return info;
}

bool DeviceAvailable(std::string* why) {
    *why = kWhy;
    return false;
}

std::string ExtractRowsOnDevice(const float*, int64_t, int32_t, int64_t, const int32_t*, int32_t, int32_t*, float*, float*,
                                float*, int64_t*, hd::RowResult*, hd::RowResult*) {
    return kWhy;
}

std::string ExtractRowsFromHost(const float*, int64_t, int32_t, const int32_t*, int32_t, int32_t*, float*, float*, float*,
                                int64_t*, hd::RowResult*, hd::RowResult*) {
    return kWhy;
}

std::string ScoreCandidates(const int32_t*, int32_t, const int32_t*, const float*, const float*, const int32_t*, int32_t,
                            const ScoreWeights&, double*) {
    return kWhy;
}

}  // namespace cuda
}  // namespace selfrag
