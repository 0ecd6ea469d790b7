#include "model.h"

#include <string>
#include <vector>

#include "errors.h"

namespace selfrag {

class LoadModelWorker : public Napi::AsyncWorker {
public:
    LoadModelWorker(Napi::Env env, Model* owner, Napi::Object self, std::string path,
                    int32_t gpuLayers, bool useMmap)
        : Napi::AsyncWorker(env),
          deferred_(Napi::Promise::Deferred::New(env)),
          owner_(owner),
          self_(Napi::Persistent(self)),
          path_(std::move(path)),
          gpuLayers_(gpuLayers),
          useMmap_(useMmap) {}

    Napi::Promise Promise() const { return deferred_.Promise(); }

    void Execute() override {
        llama_model_params params = llama_model_default_params();
        params.n_gpu_layers = gpuLayers_;
        params.load_mode = useMmap_ ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
        result_.reset(llama_model_load_from_file(path_.c_str(), params));
        if (!result_) SetError("llama.cpp could not load the model file " + path_);
    }

    void OnOK() override {
        owner_->loading_ = false;
        owner_->model_ = std::shared_ptr<llama_model>(std::move(result_));
        owner_->vocab_ = llama_model_get_vocab(owner_->model_.get());
        // The mapping is file-backed, but tell V8 the model is heavy so GC favours collecting it.
        deferred_.Resolve(Env().Undefined());
    }

    void OnError(const Napi::Error& error) override {
        owner_->loading_ = false;
        deferred_.Reject(MakeError(Env(), "MODEL_LOAD_FAILED", error.Message()));
    }

private:
    Napi::Promise::Deferred deferred_;
    Model* owner_;
    Napi::ObjectReference self_;  // keeps the JS object (and so `owner_`) alive while loading
    std::string path_;
    int32_t gpuLayers_;
    bool useMmap_;
    ModelPtr result_;
};

Napi::Function Model::Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {
                           InstanceMethod<&Model::Load>("load"),
                           InstanceMethod<&Model::Tokenize>("tokenize"),
                           InstanceMethod<&Model::Detokenize>("detokenize"),
                           InstanceMethod<&Model::TokenText>("tokenText"),
                           InstanceMethod<&Model::FindTokens>("findTokens"),
                           InstanceMethod<&Model::Info>("info"),
                           InstanceMethod<&Model::Dispose>("dispose"),
                       });
}

Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {}

void Model::EnsureLoaded(Napi::Env env) const {
    if (disposed_) ThrowJs(env, "MODEL_DISPOSED", "the model has been disposed");
    if (!model_) ThrowJs(env, "MODEL_NOT_LOADED", "the model is not loaded");
}

Napi::Value Model::Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_) ThrowJs(env, "MODEL_DISPOSED", "the model has been disposed");
    if (model_ || loading_) ThrowJs(env, "INVALID_STATE", "load() was already called on this model");
    std::string path = RequireString(env, info[0], "path");
    const Napi::Object options = RequireObject(env, info[1], "options");
    // Any int32 is llama.cpp's to read (999: every layer); absent, none.
    const int32_t gpuLayers = OptionalInt32(env, options.Get("gpuLayers"), "options.gpuLayers", INT32_MIN, INT32_MAX, 0);
    const bool useMmap = OptionalBoolean(env, options.Get("useMmap"), "options.useMmap", false);
    loading_ = true;
    auto* worker = new LoadModelWorker(env, this, info.This().As<Napi::Object>(), std::move(path), gpuLayers, useMmap);
    worker->Queue();
    return worker->Promise();
}

Napi::Value Model::Tokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureLoaded(env);
    const std::string text = RequireString(env, info[0], "text");
    const bool addBos = OptionalBoolean(env, info[1], "addBos", false);
    const bool parseSpecial = OptionalBoolean(env, info[2], "parseSpecial", false);
    // llama_tokenize takes int32 lengths.
    Require(env, text.size() < static_cast<size_t>(INT32_MAX) - 8, "text", "is too long to tokenize (" + std::to_string(text.size()) + " bytes)");
    std::vector<llama_token> tokens(text.size() + 8);
    int32_t n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                               static_cast<int32_t>(tokens.size()), addBos, parseSpecial);
    if (n < 0) {
        if (n == INT32_MIN) ThrowInvalidArgument(env, "text is too long to tokenize (more tokens than an int32 counts)");
        tokens.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), addBos, parseSpecial);
    }
    if (n < 0) ThrowJs(env, "TOKENIZE_FAILED", "llama.cpp could not tokenize the text");
    Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(n));
    std::copy(tokens.begin(), tokens.begin() + n, out.Data());
    return out;
}

Napi::Value Model::Detokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureLoaded(env);
    const Napi::Int32Array tokens = RequireTypedArray<int32_t>(env, info[0], "tokens");
    const bool renderSpecial = OptionalBoolean(env, info[1], "renderSpecial", false);
    // The text buffer's size is an int32 for llama_detokenize.
    Require(env, tokens.ElementLength() < (static_cast<size_t>(1) << 27), "tokens",
            "holds too many tokens to detokenize in one call (" + std::to_string(tokens.ElementLength()) + ")");
    const int32_t nVocab = llama_vocab_n_tokens(vocab_);
    for (size_t i = 0; i < tokens.ElementLength(); ++i) {
        if (tokens[i] < 0 || tokens[i] >= nVocab) {
            ThrowJs(env, "INVALID_TOKEN", "token id " + std::to_string(tokens[i]) + " at index " +
                                              std::to_string(i) + " is outside the vocabulary");
        }
    }
    std::string text(tokens.ElementLength() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab_, tokens.Data(), static_cast<int32_t>(tokens.ElementLength()),
                                 text.data(), static_cast<int32_t>(text.size()), false, renderSpecial);
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = llama_detokenize(vocab_, tokens.Data(), static_cast<int32_t>(tokens.ElementLength()),
                             text.data(), static_cast<int32_t>(text.size()), false, renderSpecial);
    }
    if (n < 0) ThrowJs(env, "DETOKENIZE_FAILED", "llama.cpp could not detokenize the tokens");
    text.resize(static_cast<size_t>(n));
    return Napi::String::New(env, text);
}

Napi::Value Model::TokenText(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureLoaded(env);
    const int32_t id = RequireInt32(env, info[0], "id");
    if (id < 0 || id >= llama_vocab_n_tokens(vocab_)) {
        ThrowJs(env, "INVALID_TOKEN", "token id " + std::to_string(id) + " is outside the vocabulary");
    }
    return Napi::String::New(env, llama_vocab_get_text(vocab_, id));
}

// Resolves token texts to ids by exact match over the vocabulary (-1 when absent). Reflection
// tokens are found this way rather than by tokenising, which could split a missing token into
// ordinary pieces and hide its absence.
Napi::Value Model::FindTokens(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureLoaded(env);
    const Napi::Array texts = RequireArray(env, info[0], "texts");
    std::vector<std::string> wanted(texts.Length());
    for (uint32_t i = 0; i < texts.Length(); ++i) wanted[i] = RequireString(env, texts.Get(i), "texts[" + std::to_string(i) + "]");
    Napi::Int32Array out = Napi::Int32Array::New(env, wanted.size());
    std::fill(out.Data(), out.Data() + wanted.size(), -1);
    const int32_t nVocab = llama_vocab_n_tokens(vocab_);
    for (int32_t id = 0; id < nVocab; ++id) {
        const char* text = llama_vocab_get_text(vocab_, id);
        for (size_t k = 0; k < wanted.size(); ++k) {
            if (out[k] < 0 && wanted[k] == text) out[k] = id;
        }
    }
    return out;
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureLoaded(env);
    Napi::Object out = Napi::Object::New(env);
    char desc[256] = {0};
    llama_model_desc(model_.get(), desc, sizeof(desc));
    out.Set("description", Napi::String::New(env, desc));
    out.Set("vocabSize", llama_vocab_n_tokens(vocab_));
    out.Set("trainContextSize", llama_model_n_ctx_train(model_.get()));
    out.Set("embeddingSize", llama_model_n_embd(model_.get()));
    out.Set("layerCount", llama_model_n_layer(model_.get()));
    out.Set("parameterCount", static_cast<double>(llama_model_n_params(model_.get())));
    out.Set("sizeBytes", static_cast<double>(llama_model_size(model_.get())));
    out.Set("bos", llama_vocab_bos(vocab_));
    out.Set("eos", llama_vocab_eos(vocab_));
    out.Set("addBos", llama_vocab_get_add_bos(vocab_));
    return out;
}

Napi::Value Model::Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_) return env.Undefined();
    if (loading_) ThrowJs(env, "MODEL_BUSY", "the model is still loading");
    if (model_.use_count() > 1) {
        ThrowJs(env, "MODEL_IN_USE", "dispose the model's " + std::to_string(model_.use_count() - 1) +
                                         " context(s) before the model");
    }
    model_.reset();
    vocab_ = nullptr;
    disposed_ = true;
    return env.Undefined();
}

}  // namespace selfrag
