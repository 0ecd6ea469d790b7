// Model: a loaded GGUF (memory-mapped) with its vocabulary. Exported to JS as `Model`.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

#include "llama_handles.h"

namespace selfrag {

class Model : public Napi::ObjectWrap<Model> {
public:
    static Napi::Function Define(Napi::Env env);
    explicit Model(const Napi::CallbackInfo& info);

    llama_model* Get() const { return model_.get(); }
    // Contexts share ownership, so the weights outlive every context whatever order the
    // garbage collector or environment teardown finalises them in.
    std::shared_ptr<llama_model> Shared() const { return model_; }
    const llama_vocab* Vocab() const { return vocab_; }
    // Throws MODEL_DISPOSED / MODEL_NOT_LOADED when the handle cannot be used.
    void EnsureLoaded(Napi::Env env) const;

private:
    friend class LoadModelWorker;

    Napi::Value Load(const Napi::CallbackInfo& info);
    Napi::Value Tokenize(const Napi::CallbackInfo& info);
    Napi::Value Detokenize(const Napi::CallbackInfo& info);
    Napi::Value TokenText(const Napi::CallbackInfo& info);
    Napi::Value FindTokens(const Napi::CallbackInfo& info);
    Napi::Value Info(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);

    std::shared_ptr<llama_model> model_;
    const llama_vocab* vocab_ = nullptr;
    bool loading_ = false;
    bool disposed_ = false;
};

}  // namespace selfrag
