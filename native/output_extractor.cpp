#include "output_extractor.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <limits>
#include <utility>

#include "cuda/cuda_kernels.h"
#include "ggml-backend.h"
#include "sequence_engine.h"

namespace selfrag {

OutputExtractor::OutputExtractor(int32_t vocab, std::vector<int32_t> ids, int threads)
    : vocab_(vocab), ids_(std::move(ids)), threads_(threads < 1 ? 1 : threads) {}

bool OutputExtractor::Callback(ggml_tensor* tensor, bool ask, void* self) {
    const bool isOutput = std::strcmp(tensor->name, "result_output") == 0;
    if (ask) return isOutput;  // only the logits: the rest of the graph runs unsplit
    if (isOutput) static_cast<OutputExtractor*>(self)->OnOutput(tensor);
    return true;
}

void OutputExtractor::Reset() {
    summaries_.clear();
    argmaxLogprob_.clear();
    reflection_.clear();
    error_.clear();
}

void OutputExtractor::OnOutput(const ggml_tensor* tensor) {
    if (!error_.empty()) return;
    if (tensor->type != GGML_TYPE_F32 || tensor->ne[0] != vocab_ || tensor->nb[0] != sizeof(float)) {
        SetError("the output tensor is not rows of float32 logits over the vocabulary");
        return;
    }
    const int64_t rows = tensor->ne[1];
    const int64_t stride = static_cast<int64_t>(tensor->nb[1] / sizeof(float));
    const size_t nIds = ids_.size();
    const size_t first = summaries_.size();
    summaries_.resize(first + static_cast<size_t>(rows));
    argmaxLogprob_.resize(first + static_cast<size_t>(rows));
    reflection_.resize((first + static_cast<size_t>(rows)) * nIds);
    const ggml_backend_buffer_t buffer = tensor->view_src != nullptr ? tensor->view_src->buffer : tensor->buffer;
    if (buffer == nullptr || ggml_backend_buffer_is_host(buffer)) {
        summaries_.resize(first);
        argmaxLogprob_.resize(first);
        reflection_.resize(first * nIds);
        SummariseHost(static_cast<const float*>(tensor->data), rows, stride);
        return;
    }
    // Device memory: the CUDA kernel reads the rows where they are (cuda variant); without it the
    // rows are not read here, and the step uses the host copy llama.cpp makes anyway.
    deviceResults_.resize(static_cast<size_t>(rows));
    int64_t badRow = -1;
    hd::RowResult bad{};
    const std::string error = cuda::ExtractRowsOnDevice(static_cast<const float*>(tensor->data), rows, vocab_, stride, ids_.data(),
                                                        static_cast<int32_t>(nIds), nullptr, argmaxLogprob_.data() + first, nullptr,
                                                        reflection_.data() + first * nIds, &badRow, &bad, deviceResults_.data());
    if (!error.empty()) {
        SetError(error);
        return;
    }
    deviceRows_ += static_cast<uint64_t>(rows);
    for (int64_t r = 0; r < rows; ++r) {
        summaries_[first + static_cast<size_t>(r)] = FromRowResult(deviceResults_[static_cast<size_t>(r)]);
    }
}

void OutputExtractor::SetError(const std::string& error) {
    error_ = error;
    std::lock_guard<std::mutex> lock(lastErrorMutex_);
    lastError_ = error;
}

std::string OutputExtractor::LastError() const {
    std::lock_guard<std::mutex> lock(lastErrorMutex_);
    return lastError_;
}

void OutputExtractor::SummariseHost(const float* data, int64_t rows, int64_t stride) {
    const size_t first = summaries_.size();
    summaries_.resize(first + static_cast<size_t>(rows));
    argmaxLogprob_.resize(first + static_cast<size_t>(rows));
    reflection_.resize((first + static_cast<size_t>(rows)) * ids_.size());
    // A 32016-wide row takes about 10 us; starting a thread about as much as a few rows.
    constexpr int64_t kRowsPerThread = 16;
    const int nThreads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads_, rows / kRowsPerThread)));
    if (nThreads <= 1) {
        SummariseRange(data, 0, rows, stride, first);
        return;
    }
    std::vector<std::thread> workers;
    const int64_t chunk = (rows + nThreads - 1) / nThreads;
    for (int t = 1; t < nThreads; ++t) {
        const int64_t begin = t * chunk;
        const int64_t end = std::min(rows, begin + chunk);
        if (begin < end) workers.emplace_back([=] { SummariseRange(data, begin, end, stride, first); });
    }
    SummariseRange(data, 0, std::min(rows, chunk), stride, first);
    for (auto& worker : workers) worker.join();
}

void OutputExtractor::SummariseRange(const float* data, int64_t begin, int64_t end, int64_t stride, size_t first) {
    const size_t nIds = ids_.size();
    for (int64_t r = begin; r < end; ++r) {
        const float* row = data + r * stride;
        const size_t at = first + static_cast<size_t>(r);
        const RowSummary s = SummariseRow(row, vocab_);
        summaries_[at] = s;
        const bool ok = s.status == RowSummary::kOk;
        argmaxLogprob_[at] = ok ? LogProbOf(s, s.maxLogit) : std::numeric_limits<float>::quiet_NaN();
        for (size_t k = 0; k < nIds; ++k) {
            const int32_t id = ids_[k];
            reflection_[at * nIds + k] = !ok ? std::numeric_limits<float>::quiet_NaN()
                                         : (id >= 0 && id < vocab_) ? LogProbOf(s, row[id])
                                                                    : -std::numeric_limits<float>::infinity();
        }
    }
}

RowSummary OutputExtractor::Take(size_t k, RowBlock& block) const {
    const RowSummary& s = summaries_[k];
    if (s.status != RowSummary::kOk) return s;
    block.argmax.push_back(s.argmax);
    block.argmaxLogprob.push_back(argmaxLogprob_[k]);
    block.logSumExp.push_back(s.logSumExp);
    const size_t nIds = ids_.size();
    block.reflection.insert(block.reflection.end(), reflection_.begin() + static_cast<std::ptrdiff_t>(k * nIds),
                            reflection_.begin() + static_cast<std::ptrdiff_t>((k + 1) * nIds));
    return s;
}

}  // namespace selfrag
