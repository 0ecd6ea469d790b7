// The critique weights object of scoreSegments(), read the same way by the engine addon and the
// CUDA host-test addon.
#pragma once

#include <napi.h>

#include "cuda/critique_math.h"

namespace selfrag {

// {relevance, support, utility, useSequenceScore, referenceLongFormUtility}
inline ScoreWeights ScoreWeightsFrom(const Napi::Object& w) {
    ScoreWeights weights;
    weights.relevance = w.Get("relevance").ToNumber().DoubleValue();
    weights.support = w.Get("support").ToNumber().DoubleValue();
    weights.utility = w.Get("utility").ToNumber().DoubleValue();
    weights.useSequenceScore = w.Get("useSequenceScore").ToBoolean().Value();
    weights.referenceLongFormUtility = w.Get("referenceLongFormUtility").ToBoolean().Value();
    return weights;
}

}  // namespace selfrag
