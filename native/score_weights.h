// The arguments of scoreSegments() that both the engine addon and the CUDA host-test addon read:
// the critique weights object and the packed candidate offsets, checked in the addon's one idiom
// (errors.h) the same way in both.
#pragma once

#include <napi.h>

#include <string>

#include "cuda/critique_math.h"
#include "errors.h"

namespace selfrag {

// {relevance, support, utility: number, useSequenceScore, referenceLongFormUtility: boolean}
inline ScoreWeights ScoreWeightsFrom(Napi::Env env, const Napi::Value& value, const std::string& name) {
    const Napi::Object w = RequireObject(env, value, name);
    ScoreWeights weights;
    weights.relevance = RequireNumber(env, w.Get("relevance"), name + ".relevance");
    weights.support = RequireNumber(env, w.Get("support"), name + ".support");
    weights.utility = RequireNumber(env, w.Get("utility"), name + ".utility");
    weights.useSequenceScore = OptionalBoolean(env, w.Get("useSequenceScore"), name + ".useSequenceScore", false);
    weights.referenceLongFormUtility = OptionalBoolean(env, w.Get("referenceLongFormUtility"), name + ".referenceLongFormUtility", false);
    return weights;
}

// Candidate i owns [offsets[i], offsets[i + 1]): every offset is checked before anything is read,
// non-decreasing from offsets[0] >= 0 (the caller then checks the arrays hold offsets[last]).
inline void RequireOffsets(Napi::Env env, const Napi::Int32Array& offsets) {
    const size_t n = offsets.ElementLength() - 1;
    Require(env, offsets[0] >= 0, "offsets[0]", "must be >= 0, got " + std::to_string(offsets[0]));
    for (size_t i = 0; i < n; ++i) {
        Require(env, offsets[i + 1] >= offsets[i], "offsets",
                "must be non-decreasing: offsets[" + std::to_string(i + 1) + "] = " + std::to_string(offsets[i + 1]) + " < offsets[" +
                    std::to_string(i) + "] = " + std::to_string(offsets[i]));
    }
}

}  // namespace selfrag
