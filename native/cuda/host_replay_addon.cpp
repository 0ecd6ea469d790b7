// selfrag_cuda_host.node: the CUDA kernels' shared device functions, built by the host compiler,
// for `npm run test:cuda-host` (test/cuda-host/). Not part of the engine addon, but it checks its
// arguments in the engine's idiom (errors.h): no error class is handed to it, so a failure is a
// plain Error with code INVALID_ARGUMENT naming the argument.
//   extract(logits: Float32Array, rows, vocab, ids: Int32Array)
//     -> {argmax, argmaxLogprob, logSumExp, reflection, status, badIndex}
//   score(offsets, tokens, logprobs, reflection, reflectionIds, weights) -> Float64Array(n x 5)
#include <napi.h>

#include <string>

#include "critique_math.h"
#include "host_replay.h"
#include "row_math.h"
#include "../errors.h"
#include "../score_weights.h"
#include "../segment_scorer.h"

namespace {

using selfrag::RequireTypedArray;

Napi::Value Extract(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t rows = selfrag::RequireInteger(env, info[1], "rows", 0, INT32_MAX);
    const int32_t vocab = selfrag::RequireInt32(env, info[2], "vocab", 1, INT32_MAX);
    auto logits = RequireTypedArray<float>(env, info[0], "logits", static_cast<uint64_t>(rows * vocab), "rows x vocab");
    auto ids = RequireTypedArray<int32_t>(env, info[3], "ids");
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
    auto offsets = RequireTypedArray<int32_t>(env, info[0], "offsets", 1, "candidates + 1");
    const size_t n = offsets.ElementLength() - 1;
    selfrag::RequireOffsets(env, offsets);
    const uint64_t total = static_cast<uint64_t>(offsets[n]);
    auto tokens = RequireTypedArray<int32_t>(env, info[1], "tokens", total, "offsets[last]");
    auto logprobs = RequireTypedArray<float>(env, info[2], "logprobs", total, "offsets[last]");
    auto reflection = RequireTypedArray<float>(env, info[3], "reflection", total * 15, "offsets[last] x 15");
    auto ids = RequireTypedArray<int32_t>(env, info[4], "reflectionIds", 15, "the 15 reflection ids");
    const selfrag::ScoreWeights weights = selfrag::ScoreWeightsFrom(env, info[5], "weights");
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
