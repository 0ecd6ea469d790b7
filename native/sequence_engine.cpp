#include "sequence_engine.h"

#include <algorithm>
#include <limits>
#include <string>
#include <unordered_set>

#include "errors.h"
#include "reflection_kernel.h"

namespace selfrag {

namespace {

llama_context_params MakeParams(const EngineOptions& o) {
    llama_context_params params = llama_context_default_params();
    params.n_ctx = static_cast<uint32_t>(o.contextSize) * static_cast<uint32_t>(o.sequences);
    params.n_seq_max = static_cast<uint32_t>(o.sequences);
    params.n_batch = static_cast<uint32_t>(o.batchSize);
    params.n_ubatch = static_cast<uint32_t>(o.batchSize);
    params.n_threads = o.threads;
    params.n_threads_batch = o.threadsBatch;
    params.kv_unified = o.unifiedKv;
    params.no_perf = true;
    return params;
}

}  // namespace

SequenceEngine::SequenceEngine(std::shared_ptr<llama_model> sharedModel, const EngineOptions& options)
    : options_(options),
      model_(std::move(sharedModel)),
      ctx_(llama_init_from_model(model_.get(), MakeParams(options))),
      vocab_(llama_model_get_vocab(model_.get())),
      batch_(std::max(options.batchSize, options.sequences), 1),
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
    for (auto& state : states_) state.pendingReflection.assign(options_.reflectionIds.size(), 0.0f);
    // f16 K and V for every layer and cell (llama.cpp's default cache type).
    const llama_model* model = model_.get();
    const double headDim = static_cast<double>(llama_model_n_embd(model)) / llama_model_n_head(model);
    const double kvWidth = headDim * llama_model_n_head_kv(model);
    kvBytes_ = 2.0 * 2.0 * kvWidth * llama_model_n_layer(model) * nCtx_;
}

void SequenceEngine::CheckSequence(int32_t seq) const {
    if (seq < 0 || seq >= options_.sequences) {
        throw EngineError("SEQUENCE_OUT_OF_RANGE",
                          "sequence slot " + std::to_string(seq) + " does not exist: this context has " +
                              std::to_string(options_.sequences) + " slots (0.." +
                              std::to_string(options_.sequences - 1) + ")");
    }
}

void SequenceEngine::CheckFits(int32_t seq, size_t extraTokens) const {
    CheckSequence(seq);
    const size_t total = static_cast<size_t>(State(seq).nPast) + extraTokens;
    if (total > static_cast<size_t>(nCtxSeq_)) {
        throw EngineError("CONTEXT_OVERFLOW",
                          "sequence " + std::to_string(seq) + " would hold " + std::to_string(total) +
                              " tokens (" + std::to_string(State(seq).nPast) + " already + " +
                              std::to_string(extraTokens) + " new) but the context holds " +
                              std::to_string(nCtxSeq_) + " per sequence");
    }
}

void SequenceEngine::SummariseInto(const float* logits, RowBlock& block) const {
    const RowSummary s = SummariseRow(logits, nVocab_);
    block.argmax.push_back(s.argmax);
    block.argmaxLogprob.push_back(s.maxLogit - s.logSumExp);
    block.logSumExp.push_back(s.logSumExp);
    for (int32_t id : options_.reflectionIds) {
        block.reflection.push_back(id >= 0 && id < nVocab_ ? logits[id] - s.logSumExp
                                                           : -std::numeric_limits<float>::infinity());
    }
}

void SequenceEngine::DecodeBatch(const std::function<void(int32_t, const float*)>& onRow) {
    const int32_t total = batch_.Size();
    int32_t offset = 0;
    int32_t viewSize = std::min(total, nBatch_);
    while (offset < total) {
        const int32_t count = std::min(viewSize, total - offset);
        const int32_t ret = llama_decode(ctx_.get(), batch_.View(offset, count));
        if (ret == 1) {
            if (count == 1) {
                throw EngineError("KV_FULL",
                                  "no free KV cell for the next token: the context's " +
                                      std::to_string(nCtx_) +
                                      " cells are in use; release sequences or use a larger context");
            }
            viewSize = std::max(1, count / 2);
            continue;
        }
        if (ret != 0) {
            throw EngineError("DECODE_FAILED", "llama_decode failed with code " + std::to_string(ret));
        }
        stats_.decodeCalls += 1;
        stats_.tokensEvaluated += count;
        const llama_batch view = batch_.View(offset, count);
        for (int32_t j = 0; j < count; ++j) {
            if (view.logits[j]) {
                onRow(offset + j, llama_get_logits_ith(ctx_.get(), j));
                stats_.rowsExtracted += 1;
            }
        }
        offset += count;
    }
}

RowBlock SequenceEngine::Evaluate(const std::vector<EvalItem>& items, bool allPositions) {
    std::unordered_set<int32_t> seen;
    for (const auto& item : items) {
        CheckFits(item.seq, item.tokens.size());
        if (!seen.insert(item.seq).second) {
            throw EngineError("INVALID_ARGUMENT",
                              "sequence " + std::to_string(item.seq) + " appears twice in one evaluate()");
        }
        for (llama_token t : item.tokens) {
            if (t < 0 || t >= nVocab_) {
                throw EngineError("INVALID_TOKEN", "token id " + std::to_string(t) + " is outside the vocabulary");
            }
        }
    }
    const size_t nIds = options_.reflectionIds.size();
    RowBlock block;
    block.rowOffsets.push_back(0);
    // Rows are produced in batch order, which is item order; remember which item owns each.
    std::vector<int32_t> rowsPerItem(items.size(), 0);

    // The batch holds at most nBatch tokens; longer inputs go through in several rounds.
    size_t itemIndex = 0;
    size_t tokenIndex = 0;
    std::vector<int32_t> positionBase(items.size());
    for (size_t i = 0; i < items.size(); ++i) positionBase[i] = State(items[i].seq).nPast;
    std::vector<int32_t> owner;  // batch index -> item
    while (itemIndex < items.size()) {
        batch_.Clear();
        owner.clear();
        while (itemIndex < items.size() && batch_.Size() < batch_.Capacity()) {
            const EvalItem& item = items[itemIndex];
            if (tokenIndex >= item.tokens.size()) {
                ++itemIndex;
                tokenIndex = 0;
                continue;
            }
            const bool last = tokenIndex + 1 == item.tokens.size();
            batch_.Add(item.tokens[tokenIndex], positionBase[itemIndex] + static_cast<int32_t>(tokenIndex),
                       item.seq, allPositions || last);
            owner.push_back(static_cast<int32_t>(itemIndex));
            ++tokenIndex;
        }
        if (batch_.Size() == 0) break;
        try {
            DecodeBatch([&](int32_t batchIndex, const float* logits) {
                SummariseInto(logits, block);
                rowsPerItem[static_cast<size_t>(owner[static_cast<size_t>(batchIndex)])] += 1;
            });
        } catch (...) {
            // Leave every slot as it was before this call, whatever part of it was decoded.
            for (size_t i = 0; i < items.size(); ++i) {
                llama_memory_seq_rm(llama_get_memory(ctx_.get()), items[i].seq, positionBase[i], -1);
            }
            throw;
        }
    }
    for (size_t i = 0; i < items.size(); ++i) {
        block.rowOffsets.push_back(block.rowOffsets.back() + rowsPerItem[i]);
        SequenceState& state = State(items[i].seq);
        if (items[i].tokens.empty()) continue;
        state.nPast = positionBase[i] + static_cast<int32_t>(items[i].tokens.size());
        const size_t lastRow = static_cast<size_t>(block.rowOffsets.back() - 1);
        state.hasPending = true;
        state.pendingToken = block.argmax[lastRow];
        state.pendingLogprob = block.argmaxLogprob[lastRow];
        state.pendingLogSumExp = block.logSumExp[lastRow];
        std::copy(block.reflection.begin() + static_cast<std::ptrdiff_t>(lastRow * nIds),
                  block.reflection.begin() + static_cast<std::ptrdiff_t>((lastRow + 1) * nIds),
                  state.pendingReflection.begin());
    }
    return block;
}

void SequenceEngine::Fork(int32_t src, int32_t dst) {
    CheckSequence(src);
    CheckSequence(dst);
    if (src == dst) throw EngineError("INVALID_ARGUMENT", "fork(): source and destination are the same slot");
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
