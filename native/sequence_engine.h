// SequenceEngine: one llama_context with N sequence slots. Owns the context, the per-slot
// "pending" distribution (the fused summary of the logits at the end of each slot, which is
// where greedy generation continues from), KV fork/trim/release, and decoding of one prepared
// batch. It has no loop of its own: StepLoop drives it from one thread.
// Plain C++ (no N-API); failures are EngineError.
#pragma once

#include <llama.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llama_handles.h"
#include "output_extractor.h"
#include "reflection_kernel.h"

namespace selfrag {

struct EngineOptions {
    int32_t contextSize = 2048;  // tokens per sequence slot
    int32_t sequences = 1;
    int32_t threads = 1;
    int32_t threadsBatch = 1;
    int32_t batchSize = 512;
    int32_t stepTokens = 512;  // tokens per decode step (generation first, then prefill chunks)
    bool unifiedKv = true;
    // KV cells in the cache, 0: contextSize x sequences. Fewer overcommit a unified cache (forks
    // share their prefix cells, so slots rarely fill together); a full cache makes work wait for
    // cells, and fails (KV_FULL) or stops (kv_full) only the work that can never get one.
    int32_t kvCells = 0;
    // After handing finished work to JavaScript, how long the loop waits for the work that follows
    // from it before starting the next step without it (0: never wait).
    std::chrono::microseconds reactionWindow{2000};
    // Pad a step whose token count leaves 2 or more over a multiple of this (0: never) with
    // throwaway tokens. For quantized weights on the CPU: ggml's repacked kernels multiply tokens
    // in tiles of 4 and each one left over in a pass of its own over all the weights
    // (ggml-cpu/repack.cpp), so a 3-token step costs about 1.5 times a 4-token one.
    int32_t stepRowAlign = 0;
    std::vector<int32_t> reflectionIds;  // ids whose log-probs are extracted at every position
    // Summarise logits rows at llama.cpp's output tensor, inside the graph (OutputExtractor: on a
    // CUDA device by the CUDA kernel), instead of from the host copy after the decode.
    bool extractAtOutput = false;
    // Cell types of the KV cache (K and V alike) and llama.cpp's flash-attention switch
    // (LLAMA_FLASH_ATTN_TYPE_*): a quantized V cache needs flash attention.
    ggml_type kvType = GGML_TYPE_F16;
    int32_t flashAttention = -1;  // auto
};

// Views with at least this many logits rows are summarised over `threads` threads in one go.
constexpr int32_t kParallelRows = 32;

struct SequenceState {
    int32_t nPast = 0;
    bool hasPending = false;  // true when the logits at the end of the slot are summarised
    int32_t pendingToken = -1;
    float pendingLogprob = 0.0f;
    float pendingLogSumExp = 0.0f;
    std::vector<float> pendingReflection;
};

// Fused summaries of a set of logits rows.
struct RowBlock {
    std::vector<int32_t> argmax;
    std::vector<float> argmaxLogprob;
    std::vector<float> logSumExp;
    std::vector<float> reflection;  // rows x reflectionIds.size()
};

// Counters read from the JS thread while the loop thread writes them. Each is atomic, and the
// step loop updates them only under its mutex, under which StepLoop::Snapshot reads them all: a
// snapshot is one consistent set (slotSteps = steps x sequences, tokens >= decode calls ...),
// never counters from two different steps.
struct EngineStats {
    std::atomic<uint64_t> tokensEvaluated{0};  // tokens that went through llama_decode (prompt and generated)
    std::atomic<uint64_t> decodeCalls{0};
    std::atomic<uint64_t> rowsExtracted{0};
    std::atomic<uint64_t> steps{0};            // loop iterations that decoded something
    std::atomic<uint64_t> busySlotSteps{0};    // sum over steps of the slots with a token in the step
    std::atomic<uint64_t> slotSteps{0};        // sum over steps of all slots
    std::atomic<uint64_t> generatedTokens{0};  // tokens accepted into segments
    std::atomic<uint64_t> reactionWaitUs{0};   // time spent waiting for JavaScript's follow-up work
    std::atomic<uint64_t> decodeUs{0};         // time inside llama_decode (the model's compute)
    std::atomic<uint64_t> paddingTokens{0};    // throwaway tokens decoded to round steps up (stepRowAlign)
};

class SequenceEngine {
public:
    SequenceEngine(std::shared_ptr<llama_model> model, const EngineOptions& options);

    void Fork(int32_t src, int32_t dst);
    void Trim(int32_t seq, int32_t nPast);
    void Release(int32_t seq);
    // Drops the cells of `seq` from position `from` on (rollback of a failed prefill).
    void RemoveFrom(int32_t seq, int32_t from);

    void CheckSequence(int32_t seq) const;
    // CONTEXT_OVERFLOW unless `extraTokens` appended at position `base` fit the slot.
    void CheckFits(int32_t seq, int32_t base, size_t extraTokens) const;

    SequenceState& State(int32_t seq) { return states_[static_cast<size_t>(seq)]; }
    const SequenceState& State(int32_t seq) const { return states_[static_cast<size_t>(seq)]; }
    int32_t Sequences() const { return options_.sequences; }
    int32_t ContextPerSequence() const { return nCtxSeq_; }
    int32_t ContextTotal() const { return nCtx_; }
    int32_t VocabSize() const { return nVocab_; }
    int32_t BatchSize() const { return nBatch_; }
    // Bytes llama.cpp allocated for the KV cache (its memory breakdown, all buffer types).
    double KvBytes() const { return kvBytes_; }
    const std::vector<int32_t>& ReflectionIds() const { return options_.reflectionIds; }
    const EngineOptions& Options() const { return options_; }
    EngineStats& Stats() { return stats_; }
    const llama_vocab* Vocab() const { return vocab_; }

    // llama_decode of tokens [offset, offset + count) of `batch`: 0 on success, 1 when no KV cell
    // is free for them (nothing was decoded), anything else a failure. (The caller counts it.)
    int32_t DecodeView(const Batch& batch, int32_t offset, int32_t count);
    // Logits of output row j of the last decoded view.
    const float* ViewLogits(int32_t j) const { return llama_get_logits_ith(ctx_.get(), j); }

    // Summarises output row `outputRow` (batch index `j` of the last decoded view) into `block`:
    // from the output tensor's summaries when the extractor has them, else from the host logits.
    RowSummary SummariseOutput(int32_t j, int32_t outputRow, RowBlock& block) const;
    // The extractor at the output tensor, when extractAtOutput (else nullptr).
    const OutputExtractor* Extractor() const { return extractor_.get(); }

    // Summarises one logits row into the given block. A row holding NaN (or only -Infinity) is
    // not added: the summary's status says why (see RowSummary).
    RowSummary SummariseInto(const float* logits, RowBlock& block) const;
    // Makes the last row of `block` the slot's pending distribution.
    void SetPending(int32_t seq, const RowBlock& block, size_t row);

private:
    EngineOptions options_;
    std::shared_ptr<llama_model> model_;  // declared before ctx_: the context is freed first
    std::unique_ptr<OutputExtractor> extractor_;  // the context's eval callback: outlives it too
    // Host rows of a large view summarised over several threads at once (threads > 1 only).
    std::unique_ptr<OutputExtractor> hostRows_;
    ContextPtr ctx_;
    const llama_vocab* vocab_ = nullptr;
    std::vector<SequenceState> states_;
    int32_t nCtx_ = 0;
    int32_t nCtxSeq_ = 0;
    int32_t nVocab_ = 0;
    int32_t nBatch_ = 0;
    double kvBytes_ = 0;
    EngineStats stats_;
};

}  // namespace selfrag
