// Segment generation: greedy steps for a set of sequence slots, one llama_decode per step for
// all of them, until each stops (end of generation, a stop token, a retrieval request decided by
// the in-segment threshold, the token budget or the context). Results come back once per segment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sequence_engine.h"

namespace selfrag {

struct GenerateItem {
    int32_t seq = 0;
    int32_t maxTokens = 0;
};

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
};

struct SegmentResult {
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    std::vector<float> reflection;  // tokens.size() x reflection ids, the distribution each token was chosen from
    std::string stopReason;         // "eos" | "stop" | "retrieve" | "length" | "context" | "kv_full"
};

// The first token of every segment is the slot's pending greedy choice. Every generated token
// except the last is decoded into the slot; the last one is returned but not decoded (the caller
// decides what follows it), and the slot's pending distribution is the one it was chosen from.
std::vector<SegmentResult> GenerateSegments(SequenceEngine& engine, const std::vector<GenerateItem>& items,
                                            const GenerateOptions& options);

// Ratio used by the gate, from log-probs, stable for log-probs far below -100.
double RetrievalRatio(float logRetrieval, float logContinue, float logNoRetrieval);

}  // namespace selfrag
