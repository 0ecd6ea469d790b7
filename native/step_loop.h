// StepLoop: continuous batching for one SequenceEngine, on a thread of its own.
//
// Work (prefill, generate, fork, trim, release) can be submitted at any time from the JS
// thread. Every step the loop applies the KV operations that are due, then builds one
// llama_decode batch from one token per generating sequence plus prefill chunks of waiting
// work up to the step's token budget (so a long prompt never stalls generation for more than one
// step), decodes, summarises the rows with the fused kernel, advances each generation against its
// own stop conditions, and hands every finished item over as soon as it finishes. Work on one
// sequence runs in submission order; work on different sequences is independent. When the KV
// cache has no free cell, work waits for cells instead of failing (only a step that can make no
// progress at all fails its youngest item). A prefill may be shared by several slots (a question's
// prompt, decoded once for all its candidates), and a prefill that follows one finishing in the
// same step joins that step (prompt and passages decode together). The shape follows
// llama-server's update_slots and vLLM's scheduler.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "segment_stops.h"
#include "sequence_engine.h"

namespace selfrag {

enum class WorkKind : uint8_t { Prefill, Generate, Fork, Trim, Release };

struct Work {
    uint64_t id = 0;
    WorkKind kind = WorkKind::Prefill;
    int32_t seq = -1;
    std::vector<int32_t> shareWith;  // prefill: more slots these tokens are decoded into (once, shared cells)
    int32_t dst = -1;    // fork destination
    int32_t nPast = 0;   // trim length
    std::vector<llama_token> tokens;  // prefill
    bool allPositions = false;        // prefill: a row for every position, not only the last
    int32_t maxTokens = 0;            // generate
    std::shared_ptr<const GenerateOptions> options;

    // Progress, owned by the loop thread.
    std::string failCode;  // set mid-step (a NaN logits row); the work fails once the step's decode is over
    std::string failMessage;
    bool started = false;
    bool cancelled = false;
    bool done = false;
    size_t consumed = 0;      // prefill tokens decoded
    int32_t positionBase = 0; // slot length when the prefill started
    RowBlock rows;
    SegmentResult segment;
};

// Every counter of EngineStats plus the work in the loop, read together under the loop's lock.
struct StatsSnapshot {
    uint64_t tokensEvaluated = 0;
    uint64_t decodeCalls = 0;
    uint64_t rowsExtracted = 0;
    uint64_t steps = 0;
    uint64_t busySlotSteps = 0;
    uint64_t slotSteps = 0;
    uint64_t generatedTokens = 0;
    uint64_t reactionWaitUs = 0;
    uint64_t decodeUs = 0;
    uint64_t paddingTokens = 0;
    size_t pendingWork = 0;
};

struct Completion {
    uint64_t id = 0;
    WorkKind kind = WorkKind::Prefill;
    int32_t seq = -1;
    std::string errorCode;  // empty on success
    std::string errorMessage;
    RowBlock rows;          // prefill
    SegmentResult segment;  // generate
};

class StepLoop {
public:
    // `notify` is called from the loop thread whenever completions are ready to take.
    StepLoop(SequenceEngine& engine, std::function<void()> notify);
    ~StepLoop();
    StepLoop(const StepLoop&) = delete;
    StepLoop& operator=(const StepLoop&) = delete;

    // Appends work in order; it joins at the next step.
    void Submit(std::vector<std::unique_ptr<Work>> works);
    // Every work submitted so far that touches one of `seqs` ends with ABORTED at the next step.
    void Cancel(const std::vector<int32_t>& seqs);
    std::vector<Completion> TakeCompletions();
    // Stops the thread after its current step; unfinished work completes with CONTEXT_DISPOSED.
    void Stop();

    // Guards the sequence states for readers on other threads.
    std::mutex& Mutex() { return mutex_; }
    size_t PendingCount();
    // The engine's counters and the pending work, as of one moment between two updates.
    StatsSnapshot Snapshot();

private:
    struct StepEntry {
        Work* work;
        int32_t count;  // tokens of this work in the batch
    };

    void Run();
    // Under the lock: cancellations, KV operations, starts; returns the works to decode this step.
    bool Schedule(std::vector<StepEntry>& step);
    void Complete(Work& work);
    void Fail(Work& work, const std::string& code, const std::string& message);
    void RemoveFinished();
    // Decodes `batch` view by view and applies each row; returns the number of batch tokens decoded.
    int32_t DecodeStep(const std::vector<StepEntry>& step, const std::vector<int32_t>& owner, std::string& failure);
    // Throwaway tokens appended to the batch (stepRowAlign) on `seq` from position `from`; owner -1.
    struct Padding {
        int32_t seq = -1;
        int32_t from = 0;
        int32_t tokens = 0;
    };
    Padding PadStep(const std::vector<StepEntry>& step, std::vector<int32_t>& owner);
    // The sequences a work touches (its slot, a fork's destination, a shared prefill's slots).
    static std::vector<int32_t> SeqsOf(const Work& work);
    // Ends the youngest work of a step that could not decode a single token (no free KV cell).
    void FailYoungest(const std::vector<StepEntry>& step);
    // Records that a logits row of `work` was invalid (NaN, or every logit -Infinity).
    static void MarkInvalidRow(Work& work, const RowSummary& summary, int32_t position);

    SequenceEngine& engine_;
    std::function<void()> notify_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::unique_ptr<Work>> pending_;  // submission order; the loop removes finished work
    std::vector<std::unique_ptr<Work>> finished_;
    std::vector<Completion> completions_;
    bool stopping_ = false;
    uint64_t submissions_ = 0;
    RowBlock scratch_;
    Batch batch_;
    std::thread thread_;
};

}  // namespace selfrag
