// RAII for device memory and CUDA errors as strings, for the kernels' host code. Allocation is
// stream-ordered (cudaMallocAsync on the calling thread's default stream) so a call costs no
// cudaMalloc/cudaFree synchronisation and nothing is kept between calls.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace selfrag {
namespace cuda {

inline std::string Describe(cudaError_t error, const char* what) {
    return std::string(what) + " failed: " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")";
}

template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() {
        if (data_ != nullptr) cudaFreeAsync(data_, cudaStreamPerThread);
    }

    // Allocates `count` elements; returns an error message or "".
    std::string Allocate(size_t count, const char* what) {
        const cudaError_t error = cudaMallocAsync(reinterpret_cast<void**>(&data_), (count > 0 ? count : 1) * sizeof(T),
                                                  cudaStreamPerThread);
        return error == cudaSuccess ? std::string() : Describe(error, what);
    }

    std::string Upload(const T* host, size_t count, const char* what) {
        std::string error = Allocate(count, what);
        if (!error.empty() || count == 0) return error;
        const cudaError_t copy = cudaMemcpyAsync(data_, host, count * sizeof(T), cudaMemcpyHostToDevice, cudaStreamPerThread);
        return copy == cudaSuccess ? std::string() : Describe(copy, what);
    }

    std::string Download(T* host, size_t count, const char* what) const {
        if (count == 0) return std::string();
        const cudaError_t copy = cudaMemcpyAsync(host, data_, count * sizeof(T), cudaMemcpyDeviceToHost, cudaStreamPerThread);
        return copy == cudaSuccess ? std::string() : Describe(copy, what);
    }

    T* Get() const { return data_; }

private:
    T* data_ = nullptr;
};

// Waits for the calling thread's stream and reports a launch or execution error.
inline std::string Finish(const char* what) {
    cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) return Describe(error, what);
    error = cudaStreamSynchronize(cudaStreamPerThread);
    return error == cudaSuccess ? std::string() : Describe(error, what);
}

}  // namespace cuda
}  // namespace selfrag
