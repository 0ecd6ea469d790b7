// Registers the addon's classes and functions. lib/native/addon.ts is the only importer.
#include <napi.h>

#include <string>

#include "context.h"
#include "cuda/cuda_kernels.h"
#include "errors.h"
#include "model.h"
#include "reflection_kernel.h"
#include "segment_stops.h"
#include "score_weights.h"
#include "segment_scorer.h"

namespace selfrag {
namespace {

// setErrorClass(SelfRagError): the class every native failure is thrown as.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    env.GetInstanceData<AddonData>()->errorClass = Napi::Persistent(RequireFunction(env, info[0], "errorClass"));
    return env.Undefined();
}

// extractReflectionLogprobs(logits: Float32Array, rows, vocab, ids: Int32Array,
//                           out: {argmax: Int32Array, argmaxLogprob, logSumExp, reflection: Float32Array},
//                           threads, isa) -> boolean
// Writes into caller-owned arrays (no allocation per call); returns false when this CPU cannot
// run the requested instruction set. Every argument is checked here, not only in the TypeScript
// wrapper: a Uint8Array taken for an Int32Array would be written out of bounds.
// A row holding NaN (or only -Infinity) throws NAN_LOGITS naming the first such row.
Napi::Value ExtractReflectionLogprobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t rows = RequireInteger(env, info[1], "rows", 0, INT32_MAX);
    const int64_t vocab = RequireInteger(env, info[2], "vocab", 1, INT32_MAX);
    Napi::Float32Array logits = RequireTypedArray<float>(env, info[0], "logits", static_cast<uint64_t>(rows * vocab), "rows x vocab");
    Napi::Int32Array ids = RequireTypedArray<int32_t>(env, info[3], "ids");
    Require(env, ids.ElementLength() <= INT32_MAX, "ids", "holds more than 2^31 - 1 ids");
    const Napi::Object out = RequireObject(env, info[4], "out");
    const int threads = RequireInt32(env, info[5], "threads", 1, 1024);
    // An unknown name is refused here, so `false` only ever means "this CPU cannot run it".
    const std::string isa = RequireChoice(env, info[6], "isa", {"auto", "scalar", "avx2", "avx512f", "cuda"});
    const uint64_t nIds = ids.ElementLength();
    Napi::Int32Array argmax = RequireTypedArray<int32_t>(env, out.Get("argmax"), "out.argmax", static_cast<uint64_t>(rows), "one per row");
    Napi::Float32Array argmaxLogprob = RequireTypedArray<float>(env, out.Get("argmaxLogprob"), "out.argmaxLogprob", static_cast<uint64_t>(rows), "one per row");
    Napi::Float32Array logSumExp = RequireTypedArray<float>(env, out.Get("logSumExp"), "out.logSumExp", static_cast<uint64_t>(rows), "one per row");
    Napi::Float32Array reflection = RequireTypedArray<float>(env, out.Get("reflection"), "out.reflection", static_cast<uint64_t>(rows) * nIds,
                                                             "rows x ids");
    ExtractStatus status;
    if (isa == "cuda") {
        // The device kernel over these host rows (one upload); false where there is no device path.
        std::string why;
        if (!cuda::DeviceAvailable(&why)) return Napi::Boolean::New(env, false);
        hd::RowResult bad{};
        const std::string error = cuda::ExtractRowsFromHost(logits.Data(), rows, static_cast<int32_t>(vocab), ids.Data(),
                                                            static_cast<int32_t>(nIds), argmax.Data(), argmaxLogprob.Data(),
                                                            logSumExp.Data(), reflection.Data(), &status.badRow, &bad);
        if (!error.empty()) ThrowJs(env, "CUDA_ERROR", "the CUDA reflection kernel: " + error);
        status.ran = true;
        status.badSummary.status = bad.status;
        status.badSummary.badIndex = bad.badIndex;
    } else {
        status = ExtractReflectionRowsWith(isa.c_str(), logits.Data(), rows, static_cast<int32_t>(vocab), ids.Data(),
                                           static_cast<int32_t>(nIds), argmax.Data(), argmaxLogprob.Data(),
                                           logSumExp.Data(), reflection.Data(), threads);
    }
    if (status.badRow >= 0) {
        const RowSummary& bad = status.badSummary;
        ThrowJs(env, "NAN_LOGITS", "logits row " + std::to_string(status.badRow) + " " + InvalidRowReason(bad) +
                                       (bad.status == RowSummary::kNaN ? " at index " + std::to_string(bad.badIndex) : std::string()) +
                                       ": it has no log-softmax (the other rows are written; this one holds argmax -1 and NaN)");
    }
    return Napi::Boolean::New(env, status.ran);
}

// retrievalRatio(logRet, logCont, logNoRet): the in-segment gate formula, exported for tests.
Napi::Value RetrievalRatioJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double logRet = RequireNumber(env, info[0], "logRetrieval");
    const double logCont = RequireNumber(env, info[1], "logContinue");
    const double logNoRet = RequireNumber(env, info[2], "logNoRetrieval");
    return Napi::Number::New(env, RetrievalRatio(static_cast<float>(logRet), static_cast<float>(logCont), static_cast<float>(logNoRet)));
}

// scoreSegments(offsets: Int32Array(n+1), tokens: Int32Array, logprobs: Float32Array,
//               reflection: Float32Array, reflectionIds: Int32Array,
//               weights: {relevance, support, utility, useSequenceScore, referenceLongFormUtility},
//               device?: "cpu" | "cuda")
//   -> Float64Array(n x 5): score, relevance, support, utility, sequence per candidate.
// Candidates are packed back to back; candidate i owns tokens [offsets[i], offsets[i+1]).
Napi::Value ScoreSegmentsJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Int32Array offsets = RequireTypedArray<int32_t>(env, info[0], "offsets", 1, "candidates + 1");
    const size_t n = offsets.ElementLength() - 1;
    // Every offset is checked before anything is read: non-decreasing from 0 to the total.
    RequireOffsets(env, offsets);
    const uint64_t total = static_cast<uint64_t>(offsets[n]);
    Napi::Int32Array ids = RequireTypedArray<int32_t>(env, info[4], "reflectionIds");
    const int32_t nIds = static_cast<int32_t>(ids.ElementLength());
    Require(env, nIds == 15, "reflectionIds", "must hold the 15 reflection ids, got " + std::to_string(ids.ElementLength()));
    Napi::Int32Array tokens = RequireTypedArray<int32_t>(env, info[1], "tokens", total, "offsets[last]");
    Napi::Float32Array logprobs = RequireTypedArray<float>(env, info[2], "logprobs", total, "offsets[last]");
    Napi::Float32Array reflection = RequireTypedArray<float>(env, info[3], "reflection", total * 15, "offsets[last] x 15");
    const ScoreWeights weights = ScoreWeightsFrom(env, info[5], "weights");
    const std::string device = OptionalChoice(env, info[6], "device", {"cpu", "cuda"}, "cpu");
    Napi::Float64Array out = Napi::Float64Array::New(env, n * 5);
    if (device == "cuda") {
        std::string why;
        if (!cuda::DeviceAvailable(&why)) ThrowJs(env, "CUDA_UNAVAILABLE", "scoreSegments on the GPU: " + why);
        const std::string error = cuda::ScoreCandidates(offsets.Data(), static_cast<int32_t>(n), tokens.Data(), logprobs.Data(),
                                                        reflection.Data(), ids.Data(), nIds, weights, out.Data());
        if (!error.empty()) ThrowJs(env, "CUDA_ERROR", "the CUDA segment scoring kernel: " + error);
        return out;
    }
    ScoreSegments(offsets.Data(), static_cast<int64_t>(n), tokens.Data(), logprobs.Data(), reflection.Data(), ids.Data(), nIds,
                    weights, out.Data());
    return out;
}


// cudaDevice() -> {built, available, deviceCount, name, computeCapability, archs, reason}
Napi::Value CudaDeviceJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const cuda::DeviceInfo device = cuda::QueryDevice();
    Napi::Object out = Napi::Object::New(env);
    out.Set("built", device.built);
    out.Set("available", device.available);
    out.Set("deviceCount", device.deviceCount);
    out.Set("name", device.name);
    out.Set("computeCapability", device.available ? std::to_string(device.computeMajor) + "." + std::to_string(device.computeMinor) : "");
    out.Set("archs", device.archs);
    out.Set("reason", device.reason);
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
    exports.Set("cudaDevice", Napi::Function::New(env, CudaDeviceJs));
    exports.Set("systemInfo", Napi::Function::New(env, SystemInfo));
    return exports;
}

}  // namespace selfrag

static Napi::Object InitSelfRagAddon(Napi::Env env, Napi::Object exports) { return selfrag::Init(env, exports); }

NODE_API_MODULE(selfrag_addon, InitSelfRagAddon)
