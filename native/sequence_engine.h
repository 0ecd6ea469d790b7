// SequenceEngine: one llama_context with N sequence slots, decoded together. Owns the batch
// loop (one llama_decode per step for every active sequence, halving on "no KV slot"), the KV
// fork/trim/release of slots, and the per-slot "pending" distribution: the fused summary of the
// logits at the end of each slot, which is where greedy generation continues from.
// Plain C++ (no N-API): it runs on worker threads and reports failures as EngineError.
#pragma once

#include <llama.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llama_handles.h"

namespace selfrag {

struct EngineOptions {
    int32_t contextSize = 2048;  // tokens per sequence slot
    int32_t sequences = 1;
    int32_t threads = 1;
    int32_t threadsBatch = 1;
    int32_t batchSize = 512;
    bool unifiedKv = true;
    std::vector<int32_t> reflectionIds;  // ids whose log-probs are extracted at every position
};

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
    std::vector<int32_t> rowOffsets;  // item i owns rows [rowOffsets[i], rowOffsets[i+1])
};

struct EvalItem {
    int32_t seq = 0;
    std::vector<llama_token> tokens;
};

struct EngineStats {
    double tokensEvaluated = 0;  // tokens that went through llama_decode (prompt and generated)
    double decodeCalls = 0;
    double rowsExtracted = 0;
};

class SequenceEngine {
public:
    SequenceEngine(std::shared_ptr<llama_model> model, const EngineOptions& options);

    // Appends tokens to each item's slot (one batched decode, chunked by the batch size) and
    // summarises the last position of each item (every position with allPositions).
    RowBlock Evaluate(const std::vector<EvalItem>& items, bool allPositions);

    void Fork(int32_t src, int32_t dst);
    void Trim(int32_t seq, int32_t nPast);
    void Release(int32_t seq);

    // Validation used on the JS thread before work is queued (throws EngineError).
    void CheckSequence(int32_t seq) const;
    void CheckFits(int32_t seq, size_t extraTokens) const;

    SequenceState& State(int32_t seq) { return states_[static_cast<size_t>(seq)]; }
    const SequenceState& State(int32_t seq) const { return states_[static_cast<size_t>(seq)]; }
    int32_t Sequences() const { return options_.sequences; }
    int32_t ContextPerSequence() const { return nCtxSeq_; }
    int32_t ContextTotal() const { return nCtx_; }
    int32_t VocabSize() const { return nVocab_; }
    int32_t BatchSize() const { return nBatch_; }
    double KvBytes() const { return kvBytes_; }
    const std::vector<int32_t>& ReflectionIds() const { return options_.reflectionIds; }
    const EngineOptions& Options() const { return options_; }
    const EngineStats& Stats() const { return stats_; }
    const llama_vocab* Vocab() const { return vocab_; }
    Batch& SharedBatch() { return batch_; }

    // Decodes the prepared batch in views of at most the batch size; on "no KV slot" the view
    // is halved and retried (llama.cpp's parallel example), and a single token that still does
    // not fit is KV_FULL. For every output row, onRow(batchIndex, logits) runs right after its
    // view is decoded, before the next view overwrites the logits.
    void DecodeBatch(const std::function<void(int32_t, const float*)>& onRow);

    // Summarises one logits row into the given block.
    void SummariseInto(const float* logits, RowBlock& block) const;

private:
    EngineOptions options_;
    std::shared_ptr<llama_model> model_;  // declared before ctx_: the context is freed first
    ContextPtr ctx_;
    const llama_vocab* vocab_ = nullptr;
    Batch batch_;
    std::vector<SequenceState> states_;
    int32_t nCtx_ = 0;
    int32_t nCtxSeq_ = 0;
    int32_t nVocab_ = 0;
    int32_t nBatch_ = 0;
    double kvBytes_ = 0;
    EngineStats stats_;
};

}  // namespace selfrag
