#include "segment_stops.h"

#include <algorithm>
#include <cmath>

#include "sequence_engine.h"

namespace selfrag {

namespace {

double LogAddExp(double a, double b) {
    if (std::isinf(a) && a < 0) return b;
    if (std::isinf(b) && b < 0) return a;
    const double m = std::max(a, b);
    return m + std::log(std::exp(a - m) + std::exp(b - m));
}

}  // namespace

double RetrievalRatio(float logRetrieval, float logContinue, float logNoRetrieval) {
    const double numerator = LogAddExp(logRetrieval, logContinue);
    const double denominator = LogAddExp(logRetrieval, logNoRetrieval);
    return std::exp(numerator - denominator);
}

bool AcceptToken(const SequenceEngine& engine, const GenerateOptions& options, int32_t maxTokens,
                 SegmentResult& segment, int32_t token, float logprob, const float* reflection) {
    const size_t nIds = engine.ReflectionIds().size();
    segment.tokens.push_back(token);
    segment.logprobs.push_back(logprob);
    segment.reflection.insert(segment.reflection.end(), reflection, reflection + nIds);
    const RetrievalGate& gate = options.gate;
    if (!options.ignoreEos && llama_vocab_is_eog(engine.Vocab(), token)) {
        segment.stopReason = "eos";
    } else if (std::find(options.stopTokens.begin(), options.stopTokens.end(), token) != options.stopTokens.end()) {
        segment.stopReason = "stop";
    } else if (gate.enabled && token == engine.ReflectionIds()[static_cast<size_t>(gate.noRetrievalIndex)] &&
               RetrievalRatio(reflection[gate.retrievalIndex], reflection[gate.continueIndex],
                              reflection[gate.noRetrievalIndex]) > gate.threshold) {
        segment.stopReason = "retrieve";
    } else if (static_cast<int32_t>(segment.tokens.size()) >= std::max(1, maxTokens)) {
        segment.stopReason = "length";
    } else {
        return false;
    }
    return true;
}

}  // namespace selfrag
