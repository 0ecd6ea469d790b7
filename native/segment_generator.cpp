#include "segment_generator.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "errors.h"

namespace selfrag {

namespace {

double LogAddExp(double a, double b) {
    if (std::isinf(a) && a < 0) return b;
    if (std::isinf(b) && b < 0) return a;
    const double m = std::max(a, b);
    return m + std::log(std::exp(a - m) + std::exp(b - m));
}

struct Running {
    int32_t seq;
    int32_t maxTokens;
    SegmentResult result;
    bool done = false;
};

}  // namespace

double RetrievalRatio(float logRetrieval, float logContinue, float logNoRetrieval) {
    const double numerator = LogAddExp(logRetrieval, logContinue);
    const double denominator = LogAddExp(logRetrieval, logNoRetrieval);
    return std::exp(numerator - denominator);
}

std::vector<SegmentResult> GenerateSegments(SequenceEngine& engine, const std::vector<GenerateItem>& items,
                                            const GenerateOptions& options) {
    const size_t nIds = engine.ReflectionIds().size();
    const std::unordered_set<int32_t> stops(options.stopTokens.begin(), options.stopTokens.end());
    std::unordered_set<int32_t> seen;
    std::vector<Running> running;
    running.reserve(items.size());
    for (const auto& item : items) {
        engine.CheckSequence(item.seq);
        if (!seen.insert(item.seq).second) {
            throw EngineError("INVALID_ARGUMENT", "sequence " + std::to_string(item.seq) + " appears twice in one generate()");
        }
        if (!engine.State(item.seq).hasPending) {
            throw EngineError("NO_PENDING_LOGITS", "sequence " + std::to_string(item.seq) +
                                                       " has no logits to continue from: evaluate a prompt into it first");
        }
        running.push_back({item.seq, std::max(1, item.maxTokens), {}, false});
    }

    // Records the token chosen from a summarised distribution and decides whether to stop.
    auto accept = [&](Running& r, int32_t token, float logprob, const float* reflection) {
        r.result.tokens.push_back(token);
        r.result.logprobs.push_back(logprob);
        r.result.reflection.insert(r.result.reflection.end(), reflection, reflection + nIds);
        const RetrievalGate& gate = options.gate;
        if (llama_vocab_is_eog(engine.Vocab(), token)) {
            r.result.stopReason = "eos";
        } else if (stops.count(token) != 0) {
            r.result.stopReason = "stop";
        } else if (gate.enabled && token == engine.ReflectionIds()[static_cast<size_t>(gate.noRetrievalIndex)] &&
                   RetrievalRatio(reflection[gate.retrievalIndex], reflection[gate.continueIndex],
                                  reflection[gate.noRetrievalIndex]) > gate.threshold) {
            r.result.stopReason = "retrieve";
        } else if (static_cast<int32_t>(r.result.tokens.size()) >= r.maxTokens) {
            r.result.stopReason = "length";
        } else {
            return;
        }
        r.done = true;
    };

    for (auto& r : running) {
        const SequenceState& state = engine.State(r.seq);
        accept(r, state.pendingToken, state.pendingLogprob, state.pendingReflection.data());
    }

    RowBlock rows;
    std::vector<Running*> active;
    Batch& batch = engine.SharedBatch();
    for (;;) {
        active.clear();
        batch.Clear();
        for (auto& r : running) {
            if (r.done) continue;
            SequenceState& state = engine.State(r.seq);
            if (state.nPast + 1 > engine.ContextPerSequence()) {
                r.result.stopReason = "context";
                r.done = true;
                continue;
            }
            batch.Add(r.result.tokens.back(), state.nPast, r.seq, true);
            active.push_back(&r);
        }
        if (active.empty()) break;
        rows.argmax.clear();
        rows.argmaxLogprob.clear();
        rows.logSumExp.clear();
        rows.reflection.clear();
        bool cacheFull = false;
        try {
            engine.DecodeBatch([&](int32_t, const float* logits) { engine.SummariseInto(logits, rows); });
        } catch (const EngineError& error) {
            // Views decode in order, so the rows already extracted belong to the first active
            // sequences; those advanced, the rest stop here with what they have.
            if (error.code() != "KV_FULL") throw;
            cacheFull = true;
        }
        const size_t decoded = rows.argmax.size();
        if (cacheFull) {
            for (size_t i = decoded; i < active.size(); ++i) {
                active[i]->result.stopReason = "kv_full";
                active[i]->done = true;
            }
        }
        for (size_t i = 0; i < decoded; ++i) {
            Running& r = *active[i];
            SequenceState& state = engine.State(r.seq);
            state.nPast += 1;
            const float* reflection = rows.reflection.data() + i * nIds;
            state.pendingToken = rows.argmax[i];
            state.pendingLogprob = rows.argmaxLogprob[i];
            state.pendingLogSumExp = rows.logSumExp[i];
            std::copy(reflection, reflection + nIds, state.pendingReflection.begin());
            accept(r, rows.argmax[i], rows.argmaxLogprob[i], reflection);
        }
    }

    std::vector<SegmentResult> results;
    results.reserve(running.size());
    for (auto& r : running) results.push_back(std::move(r.result));
    return results;
}

}  // namespace selfrag
