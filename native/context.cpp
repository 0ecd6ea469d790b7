#include "context.h"

#include <string>
#include <vector>

#include "errors.h"
#include "model.h"
#include "segment_generator.h"

namespace selfrag {

namespace {

template <typename TypedArray, typename T>
TypedArray ToTypedArray(Napi::Env env, const std::vector<T>& values) {
    TypedArray out = TypedArray::New(env, values.size());
    std::copy(values.begin(), values.end(), out.Data());
    return out;
}

int32_t RequireInt(Napi::Env env, const Napi::Value& value, const char* name) {
    if (!value.IsNumber()) ThrowJs(env, "INVALID_ARGUMENT", std::string(name) + " must be a number");
    return value.As<Napi::Number>().Int32Value();
}

std::vector<int32_t> RequireInt32Array(Napi::Env env, const Napi::Value& value, const char* name) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        ThrowJs(env, "INVALID_ARGUMENT", std::string(name) + " must be an Int32Array");
    }
    const Napi::Int32Array array = value.As<Napi::Int32Array>();
    return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

// Runs one engine operation off the JS thread and settles a promise; the engine's errors become
// SelfRagErrors with their codes.
template <typename Result>
class EngineWorker : public Napi::AsyncWorker {
public:
    EngineWorker(Napi::Env env, Context* context, Napi::Object self)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), context_(context),
          self_(Napi::Persistent(self)) {
        context_->SetBusy(true);
    }
    Napi::Promise Promise() const { return deferred_.Promise(); }

    void Execute() override {
        try {
            result_ = Run(context_->Engine());
        } catch (const EngineError& error) {
            code_ = error.code();
            SetError(error.what());
        } catch (const std::exception& error) {
            code_ = "INTERNAL";
            SetError(error.what());
        }
    }
    void OnOK() override {
        context_->SetBusy(false);
        deferred_.Resolve(Convert(Env(), result_));
    }
    void OnError(const Napi::Error& error) override {
        context_->SetBusy(false);
        deferred_.Reject(MakeError(Env(), code_, error.Message()));
    }

protected:
    virtual Result Run(SequenceEngine& engine) = 0;
    virtual Napi::Value Convert(Napi::Env env, const Result& result) = 0;

private:
    Napi::Promise::Deferred deferred_;
    Context* context_;
    Napi::ObjectReference self_;
    Result result_;
    std::string code_;
};

Napi::Object RowBlockToJs(Napi::Env env, const RowBlock& block) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("argmax", ToTypedArray<Napi::Int32Array>(env, block.argmax));
    out.Set("argmaxLogprob", ToTypedArray<Napi::Float32Array>(env, block.argmaxLogprob));
    out.Set("logSumExp", ToTypedArray<Napi::Float32Array>(env, block.logSumExp));
    out.Set("reflection", ToTypedArray<Napi::Float32Array>(env, block.reflection));
    out.Set("rowOffsets", ToTypedArray<Napi::Int32Array>(env, block.rowOffsets));
    return out;
}

class EvaluateWorker : public EngineWorker<RowBlock> {
public:
    EvaluateWorker(Napi::Env env, Context* context, Napi::Object self, std::vector<EvalItem> items, bool all)
        : EngineWorker(env, context, self), items_(std::move(items)), all_(all) {}

protected:
    RowBlock Run(SequenceEngine& engine) override { return engine.Evaluate(items_, all_); }
    Napi::Value Convert(Napi::Env env, const RowBlock& block) override { return RowBlockToJs(env, block); }

private:
    std::vector<EvalItem> items_;
    bool all_;
};

class GenerateWorker : public EngineWorker<std::vector<SegmentResult>> {
public:
    GenerateWorker(Napi::Env env, Context* context, Napi::Object self, std::vector<GenerateItem> items,
                   GenerateOptions options)
        : EngineWorker(env, context, self), items_(std::move(items)), options_(std::move(options)) {}

protected:
    std::vector<SegmentResult> Run(SequenceEngine& engine) override {
        return GenerateSegments(engine, items_, options_);
    }
    Napi::Value Convert(Napi::Env env, const std::vector<SegmentResult>& results) override {
        Napi::Array out = Napi::Array::New(env, results.size());
        for (size_t i = 0; i < results.size(); ++i) {
            const SegmentResult& r = results[i];
            Napi::Object item = Napi::Object::New(env);
            item.Set("seq", items_[i].seq);
            item.Set("tokens", ToTypedArray<Napi::Int32Array>(env, r.tokens));
            item.Set("logprobs", ToTypedArray<Napi::Float32Array>(env, r.logprobs));
            item.Set("reflection", ToTypedArray<Napi::Float32Array>(env, r.reflection));
            item.Set("stopReason", Napi::String::New(env, r.stopReason));
            out.Set(static_cast<uint32_t>(i), item);
        }
        return out;
    }

private:
    std::vector<GenerateItem> items_;
    GenerateOptions options_;
};

}  // namespace

Napi::Function Context::Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {
                           InstanceMethod<&Context::Evaluate>("evaluate"),
                           InstanceMethod<&Context::Generate>("generate"),
                           InstanceMethod<&Context::Fork>("fork"),
                           InstanceMethod<&Context::Trim>("trim"),
                           InstanceMethod<&Context::Release>("release"),
                           InstanceMethod<&Context::SequenceInfo>("sequenceInfo"),
                           InstanceMethod<&Context::Info>("info"),
                           InstanceMethod<&Context::Stats>("stats"),
                           InstanceMethod<&Context::Dispose>("dispose"),
                       });
}

// new Context(model, {contextSize, sequences, threads, threadsBatch, batchSize, unifiedKv, reflectionIds})
Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
        ThrowJs(env, "INVALID_ARGUMENT", "new Context(model, options) expected");
    }
    Napi::Object modelObject = info[0].As<Napi::Object>();
    AddonData* data = env.GetInstanceData<AddonData>();
    if (!modelObject.InstanceOf(data->modelClass.Value())) ThrowJs(env, "INVALID_ARGUMENT", "model must be a Model");
    Model* model = Model::Unwrap(modelObject);
    model->EnsureLoaded(env);
    const Napi::Object o = info[1].As<Napi::Object>();
    EngineOptions options;
    options.contextSize = RequireInt(env, o.Get("contextSize"), "contextSize");
    options.sequences = RequireInt(env, o.Get("sequences"), "sequences");
    options.threads = RequireInt(env, o.Get("threads"), "threads");
    options.threadsBatch = RequireInt(env, o.Get("threadsBatch"), "threadsBatch");
    options.batchSize = RequireInt(env, o.Get("batchSize"), "batchSize");
    options.unifiedKv = o.Get("unifiedKv").ToBoolean().Value();
    options.reflectionIds = RequireInt32Array(env, o.Get("reflectionIds"), "reflectionIds");
    if (options.contextSize < 1 || options.sequences < 1 || options.batchSize < 1 || options.threads < 1 ||
        options.threadsBatch < 1) {
        ThrowJs(env, "INVALID_ARGUMENT", "contextSize, sequences, batchSize and threads must be positive");
    }
    try {
        engine_ = std::make_unique<SequenceEngine>(model->Shared(), options);
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    reportedBytes_ = static_cast<int64_t>(engine_->KvBytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
}

Context::~Context() { Free(); }

void Context::Free() {
    if (!engine_) return;
    engine_.reset();
    if (reportedBytes_ != 0) {
        Napi::MemoryManagement::AdjustExternalMemory(Env(), -reportedBytes_);
        reportedBytes_ = 0;
    }
}

void Context::EnsureUsable(Napi::Env env) const {
    if (!engine_) ThrowJs(env, "CONTEXT_DISPOSED", "the context has been disposed");
    if (busy_) ThrowJs(env, "CONTEXT_BUSY", "the context is running another operation; await it first");
}

// evaluate(items: {seq: number, tokens: Int32Array}[], allPositions: boolean) -> Promise<RowBlock>
Napi::Value Context::Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    if (info.Length() < 1 || !info[0].IsArray()) ThrowJs(env, "INVALID_ARGUMENT", "evaluate(items[]) expected");
    const Napi::Array array = info[0].As<Napi::Array>();
    std::vector<EvalItem> items(array.Length());
    for (uint32_t i = 0; i < array.Length(); ++i) {
        const Napi::Value value = array.Get(i);
        if (!value.IsObject()) ThrowJs(env, "INVALID_ARGUMENT", "evaluate(): item " + std::to_string(i) + " is not an object");
        const Napi::Object item = value.As<Napi::Object>();
        items[i].seq = RequireInt(env, item.Get("seq"), "seq");
        items[i].tokens = RequireInt32Array(env, item.Get("tokens"), "tokens");
    }
    try {
        for (const auto& item : items) engine_->CheckFits(item.seq, item.tokens.size());
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    const bool all = info.Length() > 1 && info[1].ToBoolean().Value();
    auto* worker = new EvaluateWorker(env, this, info.This().As<Napi::Object>(), std::move(items), all);
    worker->Queue();
    return worker->Promise();
}

// generate(items: {seq, maxTokens}[], {stopTokens: Int32Array, gate?: {...}}) -> Promise<Segment[]>
Napi::Value Context::Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsObject()) {
        ThrowJs(env, "INVALID_ARGUMENT", "generate(items[], options) expected");
    }
    const Napi::Array array = info[0].As<Napi::Array>();
    std::vector<GenerateItem> items(array.Length());
    for (uint32_t i = 0; i < array.Length(); ++i) {
        const Napi::Value value = array.Get(i);
        if (!value.IsObject()) ThrowJs(env, "INVALID_ARGUMENT", "generate(): item " + std::to_string(i) + " is not an object");
        const Napi::Object item = value.As<Napi::Object>();
        items[i].seq = RequireInt(env, item.Get("seq"), "seq");
        items[i].maxTokens = RequireInt(env, item.Get("maxTokens"), "maxTokens");
        try {
            engine_->CheckSequence(items[i].seq);
        } catch (const EngineError& error) {
            ThrowJs(env, error.code(), error.what());
        }
        if (!engine_->State(items[i].seq).hasPending) {
            ThrowJs(env, "NO_PENDING_LOGITS", "sequence " + std::to_string(items[i].seq) +
                                                  " has no logits to continue from: evaluate a prompt into it first");
        }
    }
    const Napi::Object o = info[1].As<Napi::Object>();
    GenerateOptions options;
    if (o.Has("stopTokens")) options.stopTokens = RequireInt32Array(env, o.Get("stopTokens"), "stopTokens");
    if (o.Has("gate") && o.Get("gate").IsObject()) {
        const Napi::Object g = o.Get("gate").As<Napi::Object>();
        RetrievalGate& gate = options.gate;
        gate.enabled = true;
        gate.noRetrievalIndex = RequireInt(env, g.Get("noRetrievalIndex"), "gate.noRetrievalIndex");
        gate.retrievalIndex = RequireInt(env, g.Get("retrievalIndex"), "gate.retrievalIndex");
        gate.continueIndex = RequireInt(env, g.Get("continueIndex"), "gate.continueIndex");
        gate.threshold = g.Get("threshold").ToNumber().DoubleValue();
        const int32_t n = static_cast<int32_t>(engine_->ReflectionIds().size());
        for (int32_t index : {gate.noRetrievalIndex, gate.retrievalIndex, gate.continueIndex}) {
            if (index < 0 || index >= n) ThrowJs(env, "INVALID_ARGUMENT", "gate index outside the reflection ids");
        }
    }
    auto* worker = new GenerateWorker(env, this, info.This().As<Napi::Object>(), std::move(items), std::move(options));
    worker->Queue();
    return worker->Promise();
}

Napi::Value Context::Fork(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    try {
        engine_->Fork(RequireInt(env, info[0], "src"), RequireInt(env, info[1], "dst"));
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    return env.Undefined();
}

Napi::Value Context::Trim(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    try {
        engine_->Trim(RequireInt(env, info[0], "seq"), RequireInt(env, info[1], "nPast"));
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    return env.Undefined();
}

Napi::Value Context::Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    try {
        engine_->Release(RequireInt(env, info[0], "seq"));
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    return env.Undefined();
}

Napi::Value Context::SequenceInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) ThrowJs(env, "CONTEXT_DISPOSED", "the context has been disposed");
    const int32_t seq = RequireInt(env, info[0], "seq");
    try {
        engine_->CheckSequence(seq);
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    const SequenceState& state = engine_->State(seq);
    Napi::Object out = Napi::Object::New(env);
    out.Set("nPast", state.nPast);
    out.Set("hasPending", state.hasPending);
    if (state.hasPending) {
        out.Set("pendingToken", state.pendingToken);
        out.Set("pendingLogprob", state.pendingLogprob);
        out.Set("pendingLogSumExp", state.pendingLogSumExp);
        out.Set("pendingReflection", ToTypedArray<Napi::Float32Array>(env, state.pendingReflection));
    }
    return out;
}

Napi::Value Context::Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) ThrowJs(env, "CONTEXT_DISPOSED", "the context has been disposed");
    Napi::Object out = Napi::Object::New(env);
    out.Set("contextSize", engine_->ContextTotal());
    out.Set("contextPerSequence", engine_->ContextPerSequence());
    out.Set("sequences", engine_->Sequences());
    out.Set("batchSize", engine_->BatchSize());
    out.Set("vocabSize", engine_->VocabSize());
    out.Set("unifiedKv", engine_->Options().unifiedKv);
    out.Set("threads", engine_->Options().threads);
    out.Set("kvCacheBytes", engine_->KvBytes());
    return out;
}

Napi::Value Context::Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) ThrowJs(env, "CONTEXT_DISPOSED", "the context has been disposed");
    const EngineStats& s = engine_->Stats();
    Napi::Object out = Napi::Object::New(env);
    out.Set("tokensEvaluated", s.tokensEvaluated);
    out.Set("decodeCalls", s.decodeCalls);
    out.Set("rowsExtracted", s.rowsExtracted);
    return out;
}

Napi::Value Context::Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) ThrowJs(env, "CONTEXT_BUSY", "the context is running another operation; await it first");
    Free();
    return env.Undefined();
}

}  // namespace selfrag
