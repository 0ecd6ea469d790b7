// Which CUDA device the kernels would run on, and why none when there is none.
#include <cuda_runtime.h>

#include "cuda_kernels.h"
#include "device_buffer.cuh"

#ifndef SELFRAG_CUDA_ARCHS
#define SELFRAG_CUDA_ARCHS ""
#endif

namespace selfrag {
namespace cuda {

bool DeviceAvailable(std::string* why) {
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
        *why = "no CUDA device: " + Describe(error, "cudaGetDeviceCount");
        cudaGetLastError();  // clear the sticky error so later calls report their own
        return false;
    }
    if (count == 0) {
        *why = "no CUDA device: the CUDA runtime sees 0 devices";
        return false;
    }
    return true;
}

DeviceInfo QueryDevice() {
    DeviceInfo info;
    info.built = true;
    info.archs = SELFRAG_CUDA_ARCHS;
    if (!DeviceAvailable(&info.reason)) return info;
    int count = 0;
    cudaGetDeviceCount(&count);
    cudaDeviceProp prop{};
    const cudaError_t propError = cudaGetDeviceProperties(&prop, 0);
    if (propError != cudaSuccess) {
        info.reason = Describe(propError, "cudaGetDeviceProperties");
        return info;
    }
    info.available = true;
    info.deviceCount = count;
    info.name = prop.name;
    info.computeMajor = prop.major;
    info.computeMinor = prop.minor;
    return info;
}

}  // namespace cuda
}  // namespace selfrag
