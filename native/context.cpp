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
    const std::string kind = RequireChoice(env, value, field, {"prefill", "generate", "fork", "trim", "release"});
    if (kind == "prefill") return WorkKind::Prefill;
    if (kind == "generate") return WorkKind::Generate;
    if (kind == "fork") return WorkKind::Fork;
    if (kind == "trim") return WorkKind::Trim;
    return WorkKind::Release;
}

std::shared_ptr<const GenerateOptions> ParseGenerateOptions(Napi::Env env, const Napi::Object& item, size_t nIds,
                                                            const std::string& field) {
    auto options = std::make_shared<GenerateOptions>();
    const Napi::Value stopTokens = item.Get("stopTokens");
    if (!IsAbsent(stopTokens)) options->stopTokens = RequireInt32Vector(env, stopTokens, field + ".stopTokens");
    options->ignoreEos = OptionalBoolean(env, item.Get("ignoreEos"), field + ".ignoreEos", false);
    const Napi::Value gateValue = item.Get("gate");
    if (!IsAbsent(gateValue)) {
        const Napi::Object g = RequireObject(env, gateValue, field + ".gate");
        RetrievalGate& gate = options->gate;
        gate.enabled = true;
        // The step loop indexes the reflection row with these: out of range would read past it.
        const std::string ids = "the context's " + std::to_string(nIds) + " reflection ids";
        gate.noRetrievalIndex = RequireIndex(env, g.Get("noRetrievalIndex"), field + ".gate.noRetrievalIndex", nIds, ids);
        gate.retrievalIndex = RequireIndex(env, g.Get("retrievalIndex"), field + ".gate.retrievalIndex", nIds, ids);
        gate.continueIndex = RequireIndex(env, g.Get("continueIndex"), field + ".gate.continueIndex", nIds, ids);
        gate.threshold = RequireNumber(env, g.Get("threshold"), field + ".gate.threshold");
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

// new Context(model, {contextSize, sequences, threads, threadsBatch, batchSize, stepTokens?, unifiedKv?, reactionWindowUs?,
//                     kvCells?, reflectionIds, extraction?, kvCacheType?, flashAttention?}, onComplete(completions[]))
// The ranges are the load plan's (SelfRagModel.load checks them first); asserted here because a
// direct caller could otherwise size llama.cpp's buffers from a negative or wrapped number.
Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    Napi::Object modelObject = RequireObject(env, info[0], "model");
    const Napi::Object o = RequireObject(env, info[1], "options");
    const Napi::Function onComplete = RequireFunction(env, info[2], "onComplete");
    AddonData* data = env.GetInstanceData<AddonData>();
    Require(env, modelObject.InstanceOf(data->modelClass.Value()), "model", "must be a Model of this addon, got " + DescribeValue(modelObject));
    Model* model = Model::Unwrap(modelObject);
    model->EnsureLoaded(env);
    EngineOptions options;
    options.contextSize = RequireInt32(env, o.Get("contextSize"), "options.contextSize", 1, 1 << 20);
    options.sequences = RequireInt32(env, o.Get("sequences"), "options.sequences", 1, 256);  // llama.cpp's LLAMA_MAX_SEQ
    options.threads = RequireInt32(env, o.Get("threads"), "options.threads", 1, 1024);
    options.threadsBatch = RequireInt32(env, o.Get("threadsBatch"), "options.threadsBatch", 1, 1024);
    options.batchSize = RequireInt32(env, o.Get("batchSize"), "options.batchSize", 1, 1 << 16);
    options.stepTokens = OptionalInt32(env, o.Get("stepTokens"), "options.stepTokens", 1, 1 << 16, options.batchSize);
    options.unifiedKv = OptionalBoolean(env, o.Get("unifiedKv"), "options.unifiedKv", false);
    const Napi::Value reactionWindowUs = o.Get("reactionWindowUs");
    if (!IsAbsent(reactionWindowUs)) {
        options.reactionWindow = std::chrono::microseconds(RequireInt32(env, reactionWindowUs, "options.reactionWindowUs", 0, INT32_MAX));
    }
    options.stepRowAlign = OptionalInt32(env, o.Get("stepRowAlign"), "options.stepRowAlign", 0, 64, 0);
    const Napi::Value kvCells = o.Get("kvCells");
    if (!IsAbsent(kvCells)) {
        options.kvCells = RequireInt32(env, kvCells, "options.kvCells", 1, 1 << 30);
        Require(env, options.unifiedKv, "options.kvCells",
                "needs the unified KV cache (unifiedKv: true): per-sequence streams cannot be overcommitted");
    }
    options.reflectionIds = RequireInt32Vector(env, o.Get("reflectionIds"), "options.reflectionIds");
    options.extractAtOutput = OptionalChoice(env, o.Get("extraction"), "options.extraction", {"host", "output"}, "host") == "output";
    const std::string kvType = OptionalChoice(env, o.Get("kvCacheType"), "options.kvCacheType", {"f16", "q8_0", "q4_0"}, "f16");
    options.kvType = kvType == "q8_0" ? GGML_TYPE_Q8_0 : kvType == "q4_0" ? GGML_TYPE_Q4_0 : GGML_TYPE_F16;
    const std::string flash = OptionalChoice(env, o.Get("flashAttention"), "options.flashAttention", {"auto", "on", "off"}, "auto");
    options.flashAttention = flash == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED : flash == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
    Require(env, kvType == "f16" || flash != "off", "options.kvCacheType",
            "\"" + kvType + "\" needs flash attention (a quantized V cache): flashAttention \"auto\" or \"on\"");
    Require(env, !options.extractAtOutput || options.unifiedKv, "options.extraction",
            "\"output\" needs the unified KV cache (unifiedKv: true): with per-sequence streams llama.cpp reorders output rows");
    try {
        engine_ = std::make_unique<SequenceEngine>(model->Shared(), options);
    } catch (const EngineError& error) {
        ThrowJs(env, error.code(), error.what());
    }
    onComplete_ = Napi::Persistent(onComplete);
    tsfn_ = Napi::ThreadSafeFunction::New(env, onComplete, "selfrag-step-loop", 0, 1);
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

// submit(works: {kind, seq, dst?, nPast?, tokens?, allPositions?, shareWith?, maxTokens?, stopTokens?, gate?, ignoreEos?}[]) -> ids (Float64Array)
Napi::Value Context::Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    const Napi::Array array = RequireArray(env, info[0], "works");
    const size_t nIds = engine_->ReflectionIds().size();
    const int32_t vocab = engine_->VocabSize();
    std::vector<std::unique_ptr<Work>> works;
    works.reserve(array.Length());
    for (uint32_t i = 0; i < array.Length(); ++i) {
        const std::string field = "works[" + std::to_string(i) + "]";
        const Napi::Object item = RequireObject(env, array.Get(i), field);
        auto work = std::make_unique<Work>();
        work->kind = ParseKind(env, item.Get("kind"), field + ".kind");
        work->seq = RequireInt32(env, item.Get("seq"), field + ".seq");
        try {
            engine_->CheckSequence(work->seq);
            switch (work->kind) {
                case WorkKind::Fork:
                    work->dst = RequireInt32(env, item.Get("dst"), field + ".dst");
                    engine_->CheckSequence(work->dst);
                    // Checked here only (the engine trusts it): the same slot would clear itself.
                    Require(env, work->dst != work->seq, field + ".dst", "must differ from seq (fork onto the same slot)");
                    break;
                case WorkKind::Trim:
                    // Beyond the slot's length is the engine's check, when the trim runs.
                    work->nPast = RequireInt32(env, item.Get("nPast"), field + ".nPast", 0, INT32_MAX);
                    break;
                case WorkKind::Prefill:
                    work->tokens = RequireInt32Vector(env, item.Get("tokens"), field + ".tokens");
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
                    work->allPositions = OptionalBoolean(env, item.Get("allPositions"), field + ".allPositions", false);
                    if (!IsAbsent(item.Get("shareWith"))) {
                        work->shareWith = RequireInt32Vector(env, item.Get("shareWith"), field + ".shareWith");
                        Require(env, work->shareWith.empty() || engine_->Options().unifiedKv, field + ".shareWith",
                                "needs the unified KV cache (unifiedKv: true): a prefill shared by several slots");
                        for (size_t k = 0; k < work->shareWith.size(); ++k) {
                            const int32_t other = work->shareWith[k];
                            engine_->CheckSequence(other);
                            const auto before = work->shareWith.begin() + static_cast<std::ptrdiff_t>(k);
                            Require(env, other != work->seq && std::find(work->shareWith.begin(), before, other) == before,
                                    field + ".shareWith", "names slot " + std::to_string(other) + " twice (seq included)");
                        }
                    }
                    break;
                case WorkKind::Generate:
                    // Below 1 means one token (AcceptToken): any int32 is safe, the flows pass their budget.
                    work->maxTokens = RequireInt32(env, item.Get("maxTokens"), field + ".maxTokens");
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
    const std::vector<int32_t> seqs = RequireInt32Vector(env, info[0], "seqs");  // any ids: unknown ones match no work
    loop_->Cancel(seqs);
    return env.Undefined();
}

Napi::Value Context::SequenceInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureUsable(env);
    const int32_t seq = RequireInt32(env, info[0], "seq");
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
    out.Set("stepRowAlign", engine_->Options().stepRowAlign);
    out.Set("vocabSize", engine_->VocabSize());
    out.Set("unifiedKv", engine_->Options().unifiedKv);
    out.Set("threads", engine_->Options().threads);
    out.Set("kvCacheBytes", engine_->KvBytes());
    out.Set("kvCacheType", ggml_type_name(engine_->Options().kvType));
    const int32_t flash = engine_->Options().flashAttention;
    out.Set("flashAttention", flash == LLAMA_FLASH_ATTN_TYPE_ENABLED ? "on" : flash == LLAMA_FLASH_ATTN_TYPE_DISABLED ? "off" : "auto");
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
    out.Set("paddingTokens", static_cast<double>(s.paddingTokens));
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
