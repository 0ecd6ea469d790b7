// When a generating sequence stops: end of generation, a stop token, a retrieval request decided
// by Self-RAG's in-segment threshold, its token budget. Each generation carries its own
// conditions, so questions with different options share decode steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace selfrag {

class SequenceEngine;

// Self-RAG's in-segment retrieval decision: where the model emits [No Retrieval], retrieve
// anyway when (P([Retrieval]) + P([Continue to Use Evidence])) / (P([Retrieval]) + P([No
// Retrieval])) > threshold. Indices point into the engine's reflection ids.
struct RetrievalGate {
    bool enabled = false;
    int32_t noRetrievalIndex = -1;
    int32_t retrievalIndex = -1;
    int32_t continueIndex = -1;
    double threshold = 0.2;
};

struct GenerateOptions {
    std::vector<int32_t> stopTokens;
    RetrievalGate gate;
    // Generate through end-of-generation tokens (the benchmark's tg rows, as llama-bench does):
    // only the budget and the other conditions stop the segment.
    bool ignoreEos = false;
};

// A finished (or growing) segment. The first token is the slot's pending greedy choice; every
// token except the last is decoded into the slot; the last one is returned but not decoded (the
// caller decides what follows it), and the slot's pending distribution is the one it was chosen from.
struct SegmentResult {
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    std::vector<float> reflection;  // tokens.size() x reflection ids, the distribution each token was chosen from
    std::string stopReason;         // "eos" | "stop" | "retrieve" | "length" | "context" | "kv_full"
};

// Records the token chosen from a summarised distribution; returns true (and sets stopReason)
// when the segment ends with it.
bool AcceptToken(const SequenceEngine& engine, const GenerateOptions& options, int32_t maxTokens,
                 SegmentResult& segment, int32_t token, float logprob, const float* reflection);

// Ratio used by the gate, from log-probs, stable for log-probs far below -100.
double RetrievalRatio(float logRetrieval, float logContinue, float logNoRetrieval);

}  // namespace selfrag
