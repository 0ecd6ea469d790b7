#include "context.h"

#include <algorithm>
#include <string>
#include <vector>

#include "errors.h"
#include "model.h"

namespace selfrag {

namespace {

template <typename TypedArray, typename T>
TypedArray ToTypedArray(Napi::Env env, const std::vector<T>& values) {
    TypedArray out = TypedArray::New(env, values.size());
    std::copy(values.begin(), values.end(), out.Data());
    return out;
}

int32_t RequireInt(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsNumber()) ThrowJs(env, "INVALID_ARGUMENT", name + " must be a number");
    return value.As<Napi::Number>().Int32Value();
}

std::vector<int32_t> RequireInt32Array(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        ThrowJs(env, "INVALID_ARGUMENT", name + " must be an Int32Array");
    }
    const Napi::Int32Array array = value.As<Napi::Int32Array>();
    return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

const char* KindName(WorkKind kind) {
    switch (kind) {
        case WorkKind::Prefill: return "prefill";
        case WorkKind::Generate: return "generate";
        case WorkKind::Fork: return "fork";
        case WorkKind::Trim: return "trim";
        case WorkKind::Release: return "release";
    }
    return "?";
}

WorkKind ParseKind(Napi::Env env, const Napi::Value& value, const std::string& field) {
    const std::string kind = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
    if (kind == "prefill") return WorkKind::Prefill;
    if (kind == "generate") return WorkKind::Generate;
    if (kind == "fork") return WorkKind::Fork;
    if (kind == "trim") return WorkKind::Trim;
    if (kind == "release") return WorkKind::Release;
    ThrowJs(env, "INVALID_ARGUMENT", field + " must be \"prefill\", \"generate\", \"fork\", \"trim\" or \"release\"");
}

std::shared_ptr<const GenerateOptions> ParseGenerateOptions(Napi::Env env, const Napi::Object& item, int32_t nIds,
                                                            const std::string& field) {
    auto options = std::make_shared<GenerateOptions>();
    if (item.Has("stopTokens") && !item.Get("stopTokens").IsUndefined()) {
        options->stopTokens = RequireInt32Array(env, item.Get("stopTokens"), field + ".stopTokens");
    }
    if (item.Has("gate") && item.Get("gate").IsObject()) {
        const Napi::Object g = item.Get("gate").As<Napi::Object>();
        RetrievalGate& gate = options->gate;
        gate.enabled = true;
        gate.noRetrievalIndex = RequireInt(env, g.Get("noRetrievalIndex"), field + ".gate.noRetrievalIndex");
        gate.retrievalIndex = RequireInt(env, g.Get("retrievalIndex"), field + ".gate.retrievalIndex");
        gate.continueIndex = RequireInt(env, g.Get("continueIndex"), field + ".gate.continueIndex");
        gate.threshold = g.Get("threshold").ToNumber().DoubleValue();
        for (int32_t index : {gate.noRetrievalIndex, gate.retrievalIndex, gate.continueIndex}) {
            if (index < 0 || index >= nIds) ThrowJs(env, "INVALID_ARGUMENT", field + ".gate: index outside the reflection ids");
        }
    }
    return options;
}

Napi::Object RowBlockToJs(Napi::Env env, const RowBlock& block) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("argmax", ToTypedArray<Napi::Int32Array>(env, block.argmax));
    out.Set("argmaxLogprob", ToTypedArray<Napi::Float32Array>(env, block.argmaxLogprob));
    out.Set("logSumExp", ToTypedArray<Napi::Float32Array>(env, block.logSumExp));
    out.Set("reflection", ToTypedArray<Napi::Float32Array>(env, block.reflection));
    return out;
}

Napi::Object SegmentToJs(Napi::Env env, int32_t seq, const SegmentResult& r) {
    Napi::Object item = Napi::Object::New(env);
    item.Set("seq", seq);
    item.Set("tokens", ToTypedArray<Napi::Int32Array>(env, r.tokens));
    item.Set("logprobs", ToTypedArray<Napi::Float32Array>(env, r.logprobs));
    item.Set("reflection", ToTypedArray<Napi::Float32Array>(env, r.reflection));
    item.Set("stopReason", Napi::String::New(env, r.stopReason));
    return item;
}

}  // namespace

Napi::Function Context::Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {
                           InstanceMethod<&Context::Submit>("submit"),
                           InstanceMethod<&Context::Cancel>("cancel"),
                           InstanceMethod<&Context::SequenceInfo>("sequenceInfo"),
                           InstanceMethod<&Context::Info>("info"),
                           InstanceMethod<&Context::Stats>("stats"),
                           InstanceMethod<&Context::Dispose>("dispose"),
                       });
}

// new Context(model, {contextSize, sequences, threads, threadsBatch, batchSize, stepTokens, unifiedKv, kvCells?, reflectionIds},
//             onComplete(completions[]))
Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsFunction()) {
        ThrowJs(env, "INVALID_ARGUMENT", "new Context(model, options, onComplete) expected");
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
    options.stepTokens = o.Has("stepTokens") && !o.Get("stepTokens").IsUndefined()
                             ? RequireInt(env, o.Get("stepTokens"), "stepTokens")
                             : options.batchSize;
    options.unifiedKv = o.Get("unifiedKv").ToBoolean().Value();
    if (o.Has("reactionWindowUs") && !o.Get("reactionWindowUs").IsUndefined()) {
        const int32_t us = RequireInt(env, o.Get("reactionWindowUs"), "reactionWindowUs");
        if (us < 0) ThrowJs(env, "INVALID_ARGUMENT", "reactionWindowUs must not be negative");
        options.reactionWindow = std::chrono::microseconds(us);
    }
    if (o.Has("kvCells") && !o.Get("kvCells").IsUndefined()) {
        options.kvCells = RequireInt(env, o.Get("kvCells"), "kvCells");
        if (options.kvCells < 1) ThrowJs(env, "INVALID_ARGUMENT", "kvCells must be positive");
        if (!options.unifiedKv) {
            ThrowJs(env, "INVALID_ARGUMENT", "kvCells needs the unified KV cache (unifiedKv: true): per-sequence streams cannot be overcommitted");
        }
    }
    options.reflectionIds = RequireInt32Array(env, o.Get("reflectionIds"), "reflectionIds");
    if (o.Has("extraction") && !o.Get("extraction").IsUndefined()) {
        const std::string extraction = o.Get("extraction").ToString().Utf8Value();
        if (extraction != "host" && extraction != "output") {
            ThrowJs(env, "INVALID_ARGUMENT", "extraction must be \"host\" or \"output\", got \"" + extraction + "\"");
        }
        options.extractAtOutput = extraction == "output";
        if (options.extractAtOutput && !options.unifiedKv) {
            ThrowJs(env, "INVALID_ARGUMENT", "extraction \"output\" needs the unified KV cache (unifiedKv: true): with per-sequence "
                                             "streams llama.cpp reorders output rows");
        }
    }
    if (options.contextSize < 1 || options.sequences < 1 || options.batchSize < 1 || options.threads < 1 ||
        options.threadsBatch < 1 || options.stepTokens < 1) {
        ThrowJs(env, "INVALID_ARGUMENT", "contextSize, sequences, batchSize, stepTokens and threads must be positive");
    }
    try {
        engine_ = std::make_unique<SequenceEngine>(model->Shared(), options);
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    onComplete_ = Napi::Persistent(info[2].As<Napi::Function>());
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "selfrag-step-loop", 0, 1);
    tsfn_.Unref(env);  // an idle context does not keep the process alive
    loop_ = std::make_unique<StepLoop>(*engine_, [this] {
        // One queued delivery at a time: it takes every completion that is ready when it runs.
        if (!deliveryQueued_.exchange(true)) {
            tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function) { Deliver(env); });
        }
    });
    reportedBytes_ = static_cast<int64_t>(engine_->KvBytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
}

Context::~Context() {
    if (!engine_) return;
    loop_->Stop();
    loop_.reset();
    tsfn_.Abort();  // queued deliveries are dropped: nobody is left to receive them
    engine_.reset();
}

void Context::Free(Napi::Env env, bool deliver) {
    if (!engine_) return;
    loop_->Stop();  // joins the thread; unfinished work completes with CONTEXT_DISPOSED
    if (deliver) Deliver(env);
    loop_.reset();
    tsfn_.Abort();
    engine_.reset();
    if (outstanding_ > 0) {
        outstanding_ = 0;
        Unref();
    }
    if (reportedBytes_ != 0) {
        Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
        reportedBytes_ = 0;
    }
}

void Context::Deliver(Napi::Env env) {
    deliveryQueued_.store(false);
    if (!loop_) return;
    std::vector<Completion> done = loop_->TakeCompletions();
    if (done.empty()) return;
    Napi::HandleScope scope(env);
    Napi::Array out = Napi::Array::New(env, done.size());
    for (size_t i = 0; i < done.size(); ++i) {
        const Completion& c = done[i];
        Napi::Object item = Napi::Object::New(env);
        item.Set("id", Napi::Number::New(env, static_cast<double>(c.id)));
        item.Set("kind", KindName(c.kind));
        if (!c.errorCode.empty()) {
            item.Set("error", MakeError(env, c.errorCode, c.errorMessage));
        } else if (c.kind == WorkKind::Prefill) {
            item.Set("rows", RowBlockToJs(env, c.rows));
        } else if (c.kind == WorkKind::Generate) {
            item.Set("segment", SegmentToJs(env, c.seq, c.segment));
        }
        out.Set(static_cast<uint32_t>(i), item);
    }
    const uint64_t delivered = std::min<uint64_t>(outstanding_, done.size());
    outstanding_ -= delivered;
    if (outstanding_ == 0 && delivered > 0) {
        tsfn_.Unref(env);
        Unref();
    }
    onComplete_.Call({out});
}

void Context::EnsureUsable(Napi::Env env) const {
    if (!engine_) ThrowJs(env, "CONTEXT_DISPOSED", "the context has been disposed");
}

// submit(works: {kind, seq, dst?, nPast?, tokens?, allPositions?, shareWith?, maxTokens?, stopTokens?, gate?}[]) -> ids (Float64Array)
Napi::Value Context::Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    if (info.Length() < 1 || !info[0].IsArray()) ThrowJs(env, "INVALID_ARGUMENT", "submit(works[]) expected");
    const Napi::Array array = info[0].As<Napi::Array>();
    const int32_t nIds = static_cast<int32_t>(engine_->ReflectionIds().size());
    const int32_t vocab = engine_->VocabSize();
    std::vector<std::unique_ptr<Work>> works;
    works.reserve(array.Length());
    for (uint32_t i = 0; i < array.Length(); ++i) {
        const std::string field = "works[" + std::to_string(i) + "]";
        const Napi::Value value = array.Get(i);
        if (!value.IsObject()) ThrowJs(env, "INVALID_ARGUMENT", field + " is not an object");
        const Napi::Object item = value.As<Napi::Object>();
        auto work = std::make_unique<Work>();
        work->kind = ParseKind(env, item.Get("kind"), field + ".kind");
        work->seq = RequireInt(env, item.Get("seq"), field + ".seq");
        try {
            engine_->CheckSequence(work->seq);
            switch (work->kind) {
                case WorkKind::Fork:
                    work->dst = RequireInt(env, item.Get("dst"), field + ".dst");
                    engine_->CheckSequence(work->dst);
                    if (work->dst == work->seq) {
                        throw EngineError("INVALID_ARGUMENT", "fork(): source and destination are the same slot");
                    }
                    break;
                case WorkKind::Trim:
                    work->nPast = RequireInt(env, item.Get("nPast"), field + ".nPast");
                    if (work->nPast < 0) throw EngineError("INVALID_ARGUMENT", field + ".nPast must not be negative");
                    break;
                case WorkKind::Prefill:
                    work->tokens = RequireInt32Array(env, item.Get("tokens"), field + ".tokens");
                    for (llama_token t : work->tokens) {
                        if (t < 0 || t >= vocab) {
                            throw EngineError("INVALID_TOKEN", "token id " + std::to_string(t) + " is outside the vocabulary");
                        }
                    }
                    if (work->tokens.size() > static_cast<size_t>(engine_->ContextPerSequence())) {
                        throw EngineError("CONTEXT_OVERFLOW", "sequence " + std::to_string(work->seq) + " would hold at least " +
                                                                  std::to_string(work->tokens.size()) +
                                                                  " tokens but the context holds " +
                                                                  std::to_string(engine_->ContextPerSequence()) + " per sequence");
                    }
                    work->allPositions = item.Get("allPositions").ToBoolean().Value();
                    if (item.Has("shareWith") && !item.Get("shareWith").IsUndefined()) {
                        work->shareWith = RequireInt32Array(env, item.Get("shareWith"), field + ".shareWith");
                        if (!work->shareWith.empty() && !engine_->Options().unifiedKv) {
                            throw EngineError("INVALID_ARGUMENT", field + ".shareWith: a prefill shared by several slots needs the "
                                                                          "unified KV cache (unifiedKv: true)");
                        }
                        for (size_t k = 0; k < work->shareWith.size(); ++k) {
                            const int32_t other = work->shareWith[k];
                            engine_->CheckSequence(other);
                            if (other == work->seq || std::find(work->shareWith.begin(), work->shareWith.begin() + static_cast<std::ptrdiff_t>(k), other) !=
                                                          work->shareWith.begin() + static_cast<std::ptrdiff_t>(k)) {
                                throw EngineError("INVALID_ARGUMENT", field + ".shareWith: slot " + std::to_string(other) + " appears twice");
                            }
                        }
                    }
                    break;
                case WorkKind::Generate:
                    work->maxTokens = RequireInt(env, item.Get("maxTokens"), field + ".maxTokens");
                    work->options = ParseGenerateOptions(env, item, nIds, field);
                    break;
                case WorkKind::Release:
                    break;
            }
        } catch (const EngineError& error) {
            ThrowJs(env, error.code(), error.what());
        }
        works.push_back(std::move(work));
    }
    Napi::Float64Array ids = Napi::Float64Array::New(env, works.size());
    for (size_t i = 0; i < works.size(); ++i) {
        works[i]->id = nextId_++;
        ids[i] = static_cast<double>(works[i]->id);
    }
    if (works.empty()) return ids;
    if (outstanding_ == 0) {
        tsfn_.Ref(env);
        Ref();  // the JS object stays alive while its work is in flight
    }
    outstanding_ += works.size();
    loop_->Submit(std::move(works));
    return ids;
}

// cancel(seqs: Int32Array): work submitted so far on these slots ends with ABORTED.
Napi::Value Context::Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    const std::vector<int32_t> seqs = RequireInt32Array(env, info[0], "seqs");
    loop_->Cancel(seqs);
    return env.Undefined();
}

Napi::Value Context::SequenceInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    const int32_t seq = RequireInt(env, info[0], "seq");
    try {
        engine_->CheckSequence(seq);
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    std::lock_guard<std::mutex> lock(loop_->Mutex());
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
    EnsureUsable(env);
    Napi::Object out = Napi::Object::New(env);
    out.Set("contextSize", engine_->ContextTotal());
    out.Set("contextPerSequence", engine_->ContextPerSequence());
    out.Set("sequences", engine_->Sequences());
    out.Set("batchSize", engine_->BatchSize());
    out.Set("stepTokens", engine_->Options().stepTokens);
    out.Set("vocabSize", engine_->VocabSize());
    out.Set("unifiedKv", engine_->Options().unifiedKv);
    out.Set("threads", engine_->Options().threads);
    out.Set("kvCacheBytes", engine_->KvBytes());
    out.Set("extraction", engine_->Extractor() != nullptr ? "output" : "host");
    return out;
}

// One consistent snapshot: the loop updates its counters under its lock and this reads them
// under it (each counter alone would be safe, but a reader between two updates of one step would
// see, say, the step counted and its slot-steps not yet).
Napi::Value Context::Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    const StatsSnapshot s = loop_->Snapshot();
    Napi::Object out = Napi::Object::New(env);
    out.Set("tokensEvaluated", static_cast<double>(s.tokensEvaluated));
    out.Set("decodeCalls", static_cast<double>(s.decodeCalls));
    out.Set("rowsExtracted", static_cast<double>(s.rowsExtracted));
    out.Set("steps", static_cast<double>(s.steps));
    out.Set("busySlotSteps", static_cast<double>(s.busySlotSteps));
    out.Set("slotSteps", static_cast<double>(s.slotSteps));
    out.Set("generatedTokens", static_cast<double>(s.generatedTokens));
    out.Set("reactionWaitMs", static_cast<double>(s.reactionWaitUs) / 1000.0);
    out.Set("decodeMs", static_cast<double>(s.decodeUs) / 1000.0);
    out.Set("pendingWork", static_cast<double>(s.pendingWork));
    // Rows reduced by the CUDA kernel at the output tensor, and the last CUDA failure there (that
    // decode used the host logits instead).
    const OutputExtractor* extractor = engine_->Extractor();
    out.Set("rowsOnDevice", extractor != nullptr ? static_cast<double>(extractor->DeviceRows()) : 0.0);
    if (extractor != nullptr && !extractor->LastError().empty()) out.Set("extractionError", extractor->LastError());
    return out;
}

// dispose(): stops the loop after its current step; unfinished work is rejected (CONTEXT_DISPOSED).
Napi::Value Context::Dispose(const Napi::CallbackInfo& info) {
    Free(info.Env(), true);
    return info.Env().Undefined();
}

}  // namespace selfrag
