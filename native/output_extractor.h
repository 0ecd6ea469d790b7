// Reflection extraction at the output tensor: llama.cpp's graph evaluation callback hands over
// the logits tensor ("result_output") where the backend computed it, ubatch by ubatch. Rows on a
// CUDA device are reduced there by the CUDA kernel (cuda variant with its kernels), rows in host
// memory by the CPU kernel; only the summaries are kept, so on a GPU the full rows are never
// reduced on the CPU. Needs a unified KV cache: its ubatches are consecutive slices of the batch
// in order, so output row k of a decode is the k-th token that asked for logits (llama.cpp
// reorders outputs only for the per-sequence split of separate KV streams).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "ggml.h"
#include "cuda/row_math.h"
#include "reflection_kernel.h"

namespace selfrag {

struct RowBlock;

class OutputExtractor {
public:
    // `threads`: CPU threads for rows in host memory (split only when there are many rows).
    OutputExtractor(int32_t vocab, std::vector<int32_t> ids, int threads);

    // llama_context_params.cb_eval; `self` is the OutputExtractor.
    static bool Callback(ggml_tensor* tensor, bool ask, void* self);

    // Before each llama_decode: forget the rows of the previous one.
    void Reset();
    // Rows summarised during the last decode (0 if the callback failed: use the host logits).
    size_t Rows() const { return error_.empty() ? summaries_.size() : 0; }
    // Summarises `rows` host rows (`stride` floats apart) after those already held, over up to
    // `threads` threads when there are enough rows to pay for them.
    void SummariseHost(const float* data, int64_t rows, int64_t stride);
    // Appends output row k to `block` when valid; returns its summary either way.
    RowSummary Take(size_t k, RowBlock& block) const;
    // Rows the CUDA kernel reduced, over the extractor's life.
    uint64_t DeviceRows() const { return deviceRows_.load(); }
    // The last failure inside the callback (a CUDA error): that decode fell back to host logits.
    std::string LastError() const;

private:
    void OnOutput(const ggml_tensor* tensor);
    void SummariseRange(const float* data, int64_t begin, int64_t end, int64_t stride, size_t first);
    void SetError(const std::string& error);

    int32_t vocab_;
    std::vector<int32_t> ids_;
    int threads_;
    std::vector<RowSummary> summaries_;
    std::vector<float> argmaxLogprob_;
    std::vector<float> reflection_;  // rows x ids
    std::string error_;  // this decode's (the loop thread's own)
    // Read by JavaScript (stats) while the loop thread writes them.
    mutable std::mutex lastErrorMutex_;
    std::string lastError_;
    std::atomic<uint64_t> deviceRows_{0};
    // Scratch of the device path, kept across decodes.
    std::vector<hd::RowResult> deviceResults_;
};

}  // namespace selfrag
