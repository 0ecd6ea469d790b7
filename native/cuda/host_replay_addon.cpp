// selfrag_cuda_host.node: the CUDA kernels' shared device functions, built by the host compiler,
// for `npm run test:cuda-host` (test/cuda-host/). Not part of the engine addon.
//   extract(logits: Float32Array, rows, vocab, ids: Int32Array)
//     -> {argmax, argmaxLogprob, logSumExp, reflection, status, badIndex}
//   score(offsets, tokens, logprobs, reflection, reflectionIds, weights) -> Float64Array(n x 5)
#include <napi.h>

#include <string>

#include "critique_math.h"
#include "host_replay.h"
#include "row_math.h"
#include "../score_weights.h"
#include "../segment_scorer.h"

namespace {

template <typename T, typename Array>
Array Typed(const Napi::Env& env, const Napi::Value& value, const char* name, size_t atLeast) {
    if (!value.IsTypedArray()) throw Napi::TypeError::New(env, std::string(name) + " must be a typed array");
    Array array = value.As<Array>();
    if (array.ElementLength() < atLeast) {
        throw Napi::RangeError::New(env, std::string(name) + " holds " + std::to_string(array.ElementLength()) +
                                             " values, fewer than " + std::to_string(atLeast));
    }
    return array;
}

Napi::Value Extract(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t rows = info[1].As<Napi::Number>().Int64Value();
    const int32_t vocab = info[2].As<Napi::Number>().Int32Value();
    if (rows < 0 || vocab < 1) throw Napi::RangeError::New(env, "rows must be >= 0 and vocab >= 1");
    auto logits = Typed<float, Napi::Float32Array>(env, info[0], "logits", static_cast<size_t>(rows * vocab));
    auto ids = Typed<int32_t, Napi::Int32Array>(env, info[3], "ids", 0);
    const size_t nIds = ids.ElementLength();
    auto argmax = Napi::Int32Array::New(env, static_cast<size_t>(rows));
    auto argmaxLogprob = Napi::Float32Array::New(env, static_cast<size_t>(rows));
    auto logSumExp = Napi::Float32Array::New(env, static_cast<size_t>(rows));
    auto reflection = Napi::Float32Array::New(env, static_cast<size_t>(rows) * nIds);
    auto status = Napi::Int32Array::New(env, static_cast<size_t>(rows));
    auto badIndex = Napi::Int32Array::New(env, static_cast<size_t>(rows));
    for (size_t r = 0; r < static_cast<size_t>(rows); ++r) {
        const float* row = logits.Data() + r * static_cast<size_t>(vocab);
        const selfrag::hd::RowResult result = selfrag::cuda::ReplayRow(row, vocab);
        const bool ok = result.status == selfrag::hd::kStatusOk;
        argmax[r] = ok ? result.argmax : -1;
        argmaxLogprob[r] = ok ? selfrag::hd::LogProbOf(result, result.maxLogit) : selfrag::hd::QuietNaN();
        logSumExp[r] = ok ? result.logSumExp : selfrag::hd::QuietNaN();
        status[r] = result.status;
        badIndex[r] = result.badIndex;
        for (size_t k = 0; k < nIds; ++k) reflection[r * nIds + k] = selfrag::hd::IdLogProb(result, row, vocab, ids[k]);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("argmax", argmax);
    out.Set("argmaxLogprob", argmaxLogprob);
    out.Set("logSumExp", logSumExp);
    out.Set("reflection", reflection);
    out.Set("status", status);
    out.Set("badIndex", badIndex);
    return out;
}

Napi::Value Score(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto offsets = Typed<int32_t, Napi::Int32Array>(env, info[0], "offsets", 1);
    const size_t n = offsets.ElementLength() - 1;
    for (size_t i = 0; i < n; ++i) {
        if (offsets[0] < 0 || offsets[i + 1] < offsets[i]) throw Napi::RangeError::New(env, "offsets must be non-decreasing from >= 0");
    }
    const size_t total = static_cast<size_t>(offsets[n]);
    auto tokens = Typed<int32_t, Napi::Int32Array>(env, info[1], "tokens", total);
    auto logprobs = Typed<float, Napi::Float32Array>(env, info[2], "logprobs", total);
    auto reflection = Typed<float, Napi::Float32Array>(env, info[3], "reflection", total * 15);
    auto ids = Typed<int32_t, Napi::Int32Array>(env, info[4], "reflectionIds", 15);
    const selfrag::ScoreWeights weights = selfrag::ScoreWeightsFrom(info[5].As<Napi::Object>());
    auto out = Napi::Float64Array::New(env, n * 5);
    selfrag::ScoreSegments(offsets.Data(), static_cast<int64_t>(n), tokens.Data(), logprobs.Data(), reflection.Data(), ids.Data(), 15,
                             weights, out.Data());
    return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("extract", Napi::Function::New(env, Extract));
    exports.Set("score", Napi::Function::New(env, Score));
    exports.Set("threadsPerRow", Napi::Number::New(env, selfrag::cuda::kExtractThreads));
    return exports;
}

}  // namespace

NODE_API_MODULE(selfrag_cuda_host, Init)
