#include "sequence_engine.h"

#include <algorithm>
#include <limits>
#include <string>

#include "errors.h"
#include "reflection_kernel.h"

// llama.cpp's staging API (C++, like node-llama-cpp's own use of memory_breakdown()): what each
// buffer type holds for the model, the context's memory (the KV cache) and compute.
#include <../src/llama-ext.h>

namespace selfrag {

namespace {

llama_context_params MakeParams(const EngineOptions& o, OutputExtractor* extractor) {
    llama_context_params params = llama_context_default_params();
    params.n_ctx = o.kvCells > 0 ? static_cast<uint32_t>(o.kvCells)
                                 : static_cast<uint32_t>(o.contextSize) * static_cast<uint32_t>(o.sequences);
    params.n_seq_max = static_cast<uint32_t>(o.sequences);
    params.n_batch = static_cast<uint32_t>(o.batchSize);
    params.n_ubatch = static_cast<uint32_t>(o.batchSize);
    params.n_threads = o.threads;
    params.n_threads_batch = o.threadsBatch;
    params.kv_unified = o.unifiedKv;
    params.type_k = o.kvType;
    params.type_v = o.kvType;
    params.flash_attn_type = static_cast<llama_flash_attn_type>(o.flashAttention);
    params.no_perf = true;
    if (extractor != nullptr) {
        params.cb_eval = &OutputExtractor::Callback;
        params.cb_eval_user_data = extractor;
    }
    return params;
}

}  // namespace

SequenceEngine::SequenceEngine(std::shared_ptr<llama_model> sharedModel, const EngineOptions& options)
    : options_(options),
      model_(std::move(sharedModel)),
      extractor_(options.extractAtOutput
                     ? std::make_unique<OutputExtractor>(llama_vocab_n_tokens(llama_model_get_vocab(model_.get())),
                                                         options.reflectionIds, options.threadsBatch)
                     : nullptr),
      ctx_(llama_init_from_model(model_.get(), MakeParams(options, extractor_.get()))),
      vocab_(llama_model_get_vocab(model_.get())),
      states_(static_cast<size_t>(options.sequences)) {
    if (!ctx_) {
        throw EngineError("CONTEXT_CREATE_FAILED",
                          "llama.cpp could not create a context of " +
                              std::to_string(options.contextSize) + " tokens x " +
                              std::to_string(options.sequences) +
                              " sequences (out of memory, or beyond what the model supports)");
    }
    nCtx_ = static_cast<int32_t>(llama_n_ctx(ctx_.get()));
    // With a unified KV cache llama.cpp lets one sequence fill the whole cache; the engine keeps
    // each slot to the contextSize it was asked for, so one runaway slot cannot starve the others.
    nCtxSeq_ = std::min(static_cast<int32_t>(llama_n_ctx_seq(ctx_.get())), options_.contextSize);
    nVocab_ = llama_vocab_n_tokens(vocab_);
    nBatch_ = static_cast<int32_t>(llama_n_batch(ctx_.get()));
    if (options_.threadsBatch > 1) hostRows_ = std::make_unique<OutputExtractor>(nVocab_, options_.reflectionIds, options_.threadsBatch);
    for (auto& state : states_) state.pendingReflection.assign(options_.reflectionIds.size(), 0.0f);
    // What llama.cpp actually allocated for the cache (any cache type, padding, SWA layout).
    kvBytes_ = 0;
    for (const auto& entry : llama_get_memory_breakdown(ctx_.get())) kvBytes_ += static_cast<double>(entry.second.context);
}

void SequenceEngine::CheckSequence(int32_t seq) const {
    if (seq < 0 || seq >= options_.sequences) {
        throw EngineError("SEQUENCE_OUT_OF_RANGE",
                          "sequence slot " + std::to_string(seq) + " does not exist: this context has " +
                              std::to_string(options_.sequences) + " slots (0.." +
                              std::to_string(options_.sequences - 1) + ")");
    }
}

void SequenceEngine::CheckFits(int32_t seq, int32_t base, size_t extraTokens) const {
    CheckSequence(seq);
    const size_t total = static_cast<size_t>(base) + extraTokens;
    if (total > static_cast<size_t>(nCtxSeq_)) {
        throw EngineError("CONTEXT_OVERFLOW",
                          "sequence " + std::to_string(seq) + " would hold " + std::to_string(total) + " tokens (" +
                              std::to_string(base) + " already + " + std::to_string(extraTokens) +
                              " new) but the context holds " + std::to_string(nCtxSeq_) + " per sequence");
    }
}

RowSummary SequenceEngine::SummariseInto(const float* logits, RowBlock& block) const {
    const RowSummary s = SummariseRow(logits, nVocab_);
    if (s.status != RowSummary::kOk) return s;
    block.argmax.push_back(s.argmax);
    block.argmaxLogprob.push_back(LogProbOf(s, s.maxLogit));
    block.logSumExp.push_back(s.logSumExp);
    for (int32_t id : options_.reflectionIds) {
        block.reflection.push_back(id >= 0 && id < nVocab_ ? LogProbOf(s, logits[id])
                                                           : -std::numeric_limits<float>::infinity());
    }
    return s;
}

int32_t SequenceEngine::DecodeView(const Batch& batch, int32_t offset, int32_t count) {
    if (extractor_) extractor_->Reset();
    if (hostRows_) hostRows_->Reset();
    const llama_batch view = batch.View(offset, count);
    const int32_t ret = llama_decode(ctx_.get(), view);
    if (ret != 0 || !hostRows_ || (extractor_ && extractor_->Rows() > 0)) return ret;
    // Many rows (a large batch of generating slots): summarise them all now, over several threads,
    // from the host logits in output order.
    int32_t outputs = 0;
    for (int32_t j = 0; j < count; ++j) outputs += view.logits[j] != 0 ? 1 : 0;
    if (outputs >= kParallelRows) hostRows_->SummariseHost(llama_get_logits(ctx_.get()), outputs, nVocab_);
    return ret;
}

RowSummary SequenceEngine::SummariseOutput(int32_t j, int32_t outputRow, RowBlock& block) const {
    if (extractor_ && outputRow >= 0 && static_cast<size_t>(outputRow) < extractor_->Rows()) {
        return extractor_->Take(static_cast<size_t>(outputRow), block);
    }
    if (hostRows_ && outputRow >= 0 && static_cast<size_t>(outputRow) < hostRows_->Rows()) {
        return hostRows_->Take(static_cast<size_t>(outputRow), block);
    }
    return SummariseInto(ViewLogits(j), block);
}

void SequenceEngine::SetPending(int32_t seq, const RowBlock& block, size_t row) {
    const size_t nIds = options_.reflectionIds.size();
    SequenceState& state = State(seq);
    state.hasPending = true;
    state.pendingToken = block.argmax[row];
    state.pendingLogprob = block.argmaxLogprob[row];
    state.pendingLogSumExp = block.logSumExp[row];
    std::copy(block.reflection.begin() + static_cast<std::ptrdiff_t>(row * nIds),
              block.reflection.begin() + static_cast<std::ptrdiff_t>((row + 1) * nIds), state.pendingReflection.begin());
}

void SequenceEngine::RemoveFrom(int32_t seq, int32_t from) {
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, from, -1);
}

void SequenceEngine::Fork(int32_t src, int32_t dst) {
    CheckSequence(src);
    CheckSequence(dst);  // slots index states_: checked again here, whoever calls
    // src != dst is Context::Submit's check (the only way work arrives): a fork onto itself would
    // clear the slot, not read out of bounds, so it is not repeated here.
    llama_memory_t memory = llama_get_memory(ctx_.get());
    llama_memory_seq_rm(memory, dst, -1, -1);
    // Whole-sequence copy: with a unified KV cache this only tags the cells with `dst` (the
    // prefix is stored once); across per-sequence streams llama.cpp copies the buffer.
    llama_memory_seq_cp(memory, src, dst, -1, -1);
    State(dst) = State(src);
}

void SequenceEngine::Trim(int32_t seq, int32_t nPast) {
    CheckSequence(seq);
    SequenceState& state = State(seq);
    if (nPast < 0 || nPast > state.nPast) {
        throw EngineError("INVALID_ARGUMENT", "trim(" + std::to_string(seq) + ", " + std::to_string(nPast) +
                                                  "): the sequence holds " + std::to_string(state.nPast) +
                                                  " tokens");
    }
    if (nPast == state.nPast) return;
    if (!llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, nPast, -1)) {
        throw EngineError("TRIM_UNSUPPORTED", "this model's memory cannot remove part of a sequence");
    }
    state.nPast = nPast;
    state.hasPending = false;
}

void SequenceEngine::Release(int32_t seq) {
    CheckSequence(seq);
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, -1, -1);
    SequenceState& state = State(seq);
    state.nPast = 0;
    state.hasPending = false;
}

}  // namespace selfrag
