// Registers the addon's classes and functions. lib/native/addon.ts is the only importer.
#include <napi.h>

#include <string>

#include "context.h"
#include "errors.h"
#include "model.h"
#include "reflection_kernel.h"
#include "segment_stops.h"
#include "segment_scorer.h"

namespace selfrag {
namespace {

// setErrorClass(SelfRagError): the class every native failure is thrown as.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) ThrowJs(env, "INVALID_ARGUMENT", "setErrorClass(fn) expected");
    env.GetInstanceData<AddonData>()->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
    return env.Undefined();
}

// extractReflectionLogprobs(logits: Float32Array, rows, vocab, ids: Int32Array,
//                           out: {argmax: Int32Array, argmaxLogprob, logSumExp, reflection: Float32Array},
//                           threads, isa) -> boolean
// Writes into caller-owned arrays (no allocation per call); returns false when this CPU cannot
// run the requested instruction set.
Napi::Value ExtractReflectionLogprobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 7 || !info[0].IsTypedArray() || !info[3].IsTypedArray() || !info[4].IsObject()) {
        ThrowJs(env, "INVALID_ARGUMENT", "extractReflectionLogprobs(logits, rows, vocab, ids, out, threads, isa) expected");
    }
    Napi::Float32Array logits = info[0].As<Napi::Float32Array>();
    const int64_t rows = info[1].As<Napi::Number>().Int64Value();
    const int32_t vocab = info[2].As<Napi::Number>().Int32Value();
    Napi::Int32Array ids = info[3].As<Napi::Int32Array>();
    const Napi::Object out = info[4].As<Napi::Object>();
    const int threads = info[5].As<Napi::Number>().Int32Value();
    const std::string isa = info[6].As<Napi::String>().Utf8Value();
    Napi::Int32Array argmax = out.Get("argmax").As<Napi::Int32Array>();
    Napi::Float32Array argmaxLogprob = out.Get("argmaxLogprob").As<Napi::Float32Array>();
    Napi::Float32Array logSumExp = out.Get("logSumExp").As<Napi::Float32Array>();
    Napi::Float32Array reflection = out.Get("reflection").As<Napi::Float32Array>();
    const int64_t nIds = static_cast<int64_t>(ids.ElementLength());
    if (rows < 0 || vocab <= 0 || static_cast<int64_t>(logits.ElementLength()) < rows * vocab ||
        static_cast<int64_t>(argmax.ElementLength()) < rows || static_cast<int64_t>(argmaxLogprob.ElementLength()) < rows ||
        static_cast<int64_t>(logSumExp.ElementLength()) < rows ||
        static_cast<int64_t>(reflection.ElementLength()) < rows * nIds) {
        ThrowJs(env, "INVALID_ARGUMENT", "extractReflectionLogprobs(): array sizes do not match rows x vocab");
    }
    const bool ran = ExtractReflectionRowsWith(isa.c_str(), logits.Data(), rows, vocab, ids.Data(),
                                               static_cast<int32_t>(nIds), argmax.Data(), argmaxLogprob.Data(),
                                               logSumExp.Data(), reflection.Data(), threads);
    return Napi::Boolean::New(env, ran);
}

// retrievalRatio(logRet, logCont, logNoRet): the in-segment gate formula, exported for tests.
Napi::Value RetrievalRatioJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), RetrievalRatio(info[0].As<Napi::Number>().FloatValue(),
                                                        info[1].As<Napi::Number>().FloatValue(),
                                                        info[2].As<Napi::Number>().FloatValue()));
}

// scoreSegments(offsets: Int32Array(n+1), tokens: Int32Array, logprobs: Float32Array,
//               reflection: Float32Array, reflectionIds: Int32Array,
//               weights: {relevance, support, utility, useSequenceScore, referenceLongFormUtility})
//   -> Float64Array(n x 5): score, relevance, support, utility, sequence per candidate.
// Candidates are packed back to back; candidate i owns tokens [offsets[i], offsets[i+1]).
Napi::Value ScoreSegmentsJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 6 || !info[5].IsObject()) ThrowJs(env, "INVALID_ARGUMENT", "scoreSegments(offsets, tokens, logprobs, reflection, ids, weights) expected");
    for (int i = 0; i < 5; ++i) {
        if (!info[i].IsTypedArray()) ThrowJs(env, "INVALID_ARGUMENT", "scoreSegments(): argument " + std::to_string(i) + " must be a typed array");
    }
    Napi::Int32Array offsets = info[0].As<Napi::Int32Array>();
    Napi::Int32Array tokens = info[1].As<Napi::Int32Array>();
    Napi::Float32Array logprobs = info[2].As<Napi::Float32Array>();
    Napi::Float32Array reflection = info[3].As<Napi::Float32Array>();
    Napi::Int32Array ids = info[4].As<Napi::Int32Array>();
    const Napi::Object w = info[5].As<Napi::Object>();
    ScoreWeights weights;
    weights.relevance = w.Get("relevance").ToNumber().DoubleValue();
    weights.support = w.Get("support").ToNumber().DoubleValue();
    weights.utility = w.Get("utility").ToNumber().DoubleValue();
    weights.useSequenceScore = w.Get("useSequenceScore").ToBoolean().Value();
    weights.referenceLongFormUtility = w.Get("referenceLongFormUtility").ToBoolean().Value();
    const int32_t nIds = static_cast<int32_t>(ids.ElementLength());
    if (nIds != 15) ThrowJs(env, "INVALID_ARGUMENT", "scoreSegments(): expected the 15 reflection ids");
    const size_t n = offsets.ElementLength() == 0 ? 0 : offsets.ElementLength() - 1;
    const size_t total = n == 0 ? 0 : static_cast<size_t>(offsets[n]);
    if (tokens.ElementLength() < total || logprobs.ElementLength() < total || reflection.ElementLength() < total * nIds) {
        ThrowJs(env, "INVALID_ARGUMENT", "scoreSegments(): tokens, logprobs and reflection do not cover the offsets");
    }
    Napi::Float64Array out = Napi::Float64Array::New(env, n * 5);
    for (size_t i = 0; i < n; ++i) {
        const int32_t begin = offsets[i];
        const int32_t end = offsets[i + 1];
        if (begin < 0 || end < begin) ThrowJs(env, "INVALID_ARGUMENT", "scoreSegments(): offsets must be non-decreasing");
        const CandidateScore s = ScoreCandidate(tokens.Data() + begin, logprobs.Data() + begin,
                                                reflection.Data() + static_cast<int64_t>(begin) * nIds, end - begin,
                                                ids.Data(), nIds, weights);
        out[i * 5 + 0] = s.score;
        out[i * 5 + 1] = s.relevance;
        out[i * 5 + 2] = s.support;
        out[i * 5 + 3] = s.utility;
        out[i * 5 + 4] = s.sequence;
    }
    return out;
}


Napi::Value KernelIsaJs(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), KernelIsa()); }

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), llama_print_system_info());
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    auto* data = new AddonData();
    env.SetInstanceData<AddonData>(data);
    Napi::Function model = Model::Define(env);
    Napi::Function context = Context::Define(env);
    data->modelClass = Napi::Persistent(model);
    data->contextClass = Napi::Persistent(context);
    exports.Set("Model", model);
    exports.Set("Context", context);
    exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
    exports.Set("extractReflectionLogprobs", Napi::Function::New(env, ExtractReflectionLogprobs));
    exports.Set("retrievalRatio", Napi::Function::New(env, RetrievalRatioJs));
    exports.Set("scoreSegments", Napi::Function::New(env, ScoreSegmentsJs));
    exports.Set("kernelIsa", Napi::Function::New(env, KernelIsaJs));
    exports.Set("systemInfo", Napi::Function::New(env, SystemInfo));
    return exports;
}

}  // namespace selfrag

static Napi::Object InitSelfRagAddon(Napi::Env env, Napi::Object exports) { return selfrag::Init(env, exports); }

NODE_API_MODULE(selfrag_addon, InitSelfRagAddon)
