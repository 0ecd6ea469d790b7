// RAII owners for llama.cpp handles: every handle the addon creates is freed exactly once,
// on dispose() or when the owning JS object is collected.
#pragma once

#include <llama.h>

#include <memory>
#include <vector>

namespace selfrag {

struct ModelDeleter {
    void operator()(llama_model* model) const { llama_model_free(model); }
};
struct ContextDeleter {
    void operator()(llama_context* context) const { llama_free(context); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

// llama_batch owns five malloc'ed arrays; this keeps them tied to one scope.
class Batch {
public:
    Batch(int32_t capacity, int32_t seqsPerToken)
        : batch_(llama_batch_init(capacity, 0, seqsPerToken)), capacity_(capacity) {}
    ~Batch() { llama_batch_free(batch_); }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    void Clear() { batch_.n_tokens = 0; }
    void Add(llama_token token, llama_pos pos, llama_seq_id seq, bool output) {
        const int32_t i = batch_.n_tokens++;
        batch_.token[i] = token;
        batch_.pos[i] = pos;
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = seq;
        batch_.logits[i] = output ? 1 : 0;
    }
    // A token shared by several sequences (decoded once, its KV cell tagged with all of them);
    // `seqs` holds at most the seqsPerToken the batch was created with.
    void Add(llama_token token, llama_pos pos, const std::vector<llama_seq_id>& seqs, bool output) {
        const int32_t i = batch_.n_tokens++;
        batch_.token[i] = token;
        batch_.pos[i] = pos;
        batch_.n_seq_id[i] = static_cast<int32_t>(seqs.size());
        for (size_t k = 0; k < seqs.size(); ++k) batch_.seq_id[i][k] = seqs[k];
        batch_.logits[i] = output ? 1 : 0;
    }
    int32_t Size() const { return batch_.n_tokens; }
    int32_t Capacity() const { return capacity_; }
    // A view of tokens [offset, offset + count), as llama.cpp's examples pass sub-batches.
    llama_batch View(int32_t offset, int32_t count) const {
        llama_batch view = batch_;
        view.n_tokens = count;
        view.token += offset;
        view.pos += offset;
        view.n_seq_id += offset;
        view.seq_id += offset;
        view.logits += offset;
        return view;
    }

private:
    llama_batch batch_;
    int32_t capacity_;
};

}  // namespace selfrag
