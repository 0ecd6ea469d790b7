#include "step_loop.h"

#include <algorithm>
#include <chrono>

#include "errors.h"

namespace selfrag {

namespace {

bool Touches(const Work& work, int32_t seq) {
    return work.seq == seq || (work.kind == WorkKind::Fork && work.dst == seq);
}

}  // namespace

StepLoop::StepLoop(SequenceEngine& engine, std::function<void()> notify)
    : engine_(engine),
      notify_(std::move(notify)),
      batch_(engine.Options().stepTokens + engine.Sequences(), 1),
      thread_([this] { Run(); }) {}

StepLoop::~StepLoop() { Stop(); }

void StepLoop::Submit(std::vector<std::unique_ptr<Work>> works) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& work : works) pending_.push_back(std::move(work));
        submissions_ += 1;
    }
    wake_.notify_one();
}

void StepLoop::Cancel(const std::vector<int32_t>& seqs) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& work : pending_) {
            for (int32_t seq : seqs) {
                if (Touches(*work, seq)) work->cancelled = true;
            }
        }
        submissions_ += 1;
    }
    wake_.notify_one();
}

std::vector<Completion> StepLoop::TakeCompletions() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Completion> out;
    out.swap(completions_);
    return out;
}

size_t StepLoop::PendingCount() {
    std::lock_guard<std::mutex> lock(mutex_);
    return pending_.size();
}

void StepLoop::Stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& work : pending_) {
        if (!work->done) Fail(*work, "CONTEXT_DISPOSED", "the context was disposed before this work finished");
    }
    pending_.clear();
}

void StepLoop::Complete(Work& work) {
    Completion c;
    c.id = work.id;
    c.kind = work.kind;
    c.seq = work.seq;
    if (work.kind == WorkKind::Generate) engine_.Stats().generatedTokens += work.segment.tokens.size();
    c.rows = std::move(work.rows);
    c.segment = std::move(work.segment);
    completions_.push_back(std::move(c));
    work.done = true;
}

void StepLoop::Fail(Work& work, const std::string& code, const std::string& message) {
    // A prefill that fails part-way leaves its slot as it was before it started.
    if (work.kind == WorkKind::Prefill && work.started && work.consumed > 0) {
        engine_.RemoveFrom(work.seq, work.positionBase);
        SequenceState& state = engine_.State(work.seq);
        state.nPast = work.positionBase;
        state.hasPending = false;
    }
    Completion c;
    c.id = work.id;
    c.kind = work.kind;
    c.seq = work.seq;
    c.errorCode = code;
    c.errorMessage = message;
    completions_.push_back(std::move(c));
    work.done = true;
}

void StepLoop::RemoveFinished() {
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(), [](const std::unique_ptr<Work>& w) { return w->done; }),
                   pending_.end());
}

bool StepLoop::Schedule(std::vector<StepEntry>& step) {
    const int32_t nSeq = engine_.Sequences();
    std::vector<char> blocked(static_cast<size_t>(nSeq), 0);
    std::vector<Work*> prefills;
    int32_t generating = 0;
    for (auto& owned : pending_) {
        Work& w = *owned;
        if (w.done) continue;
        if (w.cancelled) {
            Fail(w, "ABORTED", "the work was cancelled: its request was aborted");
            continue;
        }
        const bool ready = !blocked[static_cast<size_t>(w.seq)] &&
                           !(w.kind == WorkKind::Fork && blocked[static_cast<size_t>(w.dst)]);
        auto block = [&] {
            blocked[static_cast<size_t>(w.seq)] = 1;
            if (w.kind == WorkKind::Fork) blocked[static_cast<size_t>(w.dst)] = 1;
        };
        if (!ready) {
            block();
            continue;
        }
        try {
            switch (w.kind) {
                case WorkKind::Fork:
                    engine_.Fork(w.seq, w.dst);
                    Complete(w);
                    break;
                case WorkKind::Trim:
                    engine_.Trim(w.seq, w.nPast);
                    Complete(w);
                    break;
                case WorkKind::Release:
                    engine_.Release(w.seq);
                    Complete(w);
                    break;
                case WorkKind::Prefill:
                    if (!w.started) {
                        engine_.CheckFits(w.seq, w.tokens.size());
                        if (w.tokens.empty()) {
                            Complete(w);
                            break;
                        }
                        w.started = true;
                        w.positionBase = engine_.State(w.seq).nPast;
                        engine_.State(w.seq).hasPending = false;
                    }
                    prefills.push_back(&w);
                    block();
                    break;
                case WorkKind::Generate: {
                    SequenceState& state = engine_.State(w.seq);
                    if (!w.started) {
                        if (!state.hasPending) {
                            throw EngineError("NO_PENDING_LOGITS", "sequence " + std::to_string(w.seq) +
                                                                       " has no logits to continue from: evaluate a prompt into it first");
                        }
                        w.started = true;
                        if (AcceptToken(engine_, *w.options, w.maxTokens, w.segment, state.pendingToken, state.pendingLogprob,
                                        state.pendingReflection.data())) {
                            Complete(w);
                            break;
                        }
                    }
                    if (state.nPast + 1 > engine_.ContextPerSequence()) {
                        w.segment.stopReason = "context";
                        Complete(w);
                        break;
                    }
                    step.push_back({&w, 1});
                    generating += 1;
                    block();
                    break;
                }
            }
        } catch (const EngineError& error) {
            Fail(w, error.code(), error.what());
        }
    }
    // Prefill chunks fill what generation leaves of the step's budget (at least a few tokens, so
    // prefill advances even when generation alone fills the budget).
    const int32_t budget = engine_.Options().stepTokens;
    int32_t room = std::max(budget - generating, std::min(16, budget));
    for (Work* w : prefills) {
        if (room <= 0) break;
        const int32_t remaining = static_cast<int32_t>(w->tokens.size() - w->consumed);
        const int32_t count = std::min(room, remaining);
        step.push_back({w, count});
        room -= count;
    }
    return !step.empty();
}

int32_t StepLoop::DecodeStep(const std::vector<StepEntry>& step, const std::vector<int32_t>& owner, std::string& failure) {
    const int32_t total = batch_.Size();
    int32_t offset = 0;
    int32_t viewSize = std::min(total, engine_.BatchSize());
    while (offset < total) {
        const int32_t count = std::min(viewSize, total - offset);
        const int32_t ret = engine_.DecodeView(batch_, offset, count);
        if (ret == 1) {
            // No free KV cell for this view: try a smaller one; a single token that does not fit
            // waits for the next step (other work may release cells meanwhile).
            if (count > 1) {
                viewSize = std::max(1, count / 2);
                continue;
            }
            break;
        }
        if (ret != 0) {
            failure = "llama_decode failed with code " + std::to_string(ret);
            break;
        }
        const llama_batch view = batch_.View(offset, count);
        std::lock_guard<std::mutex> lock(mutex_);
        for (int32_t j = 0; j < count; ++j) {
            Work& w = *step[static_cast<size_t>(owner[static_cast<size_t>(offset + j)])].work;
            SequenceState& state = engine_.State(w.seq);
            const float* logits = view.logits[j] ? engine_.ViewLogits(j) : nullptr;
            if (logits != nullptr) engine_.Stats().rowsExtracted += 1;
            if (w.kind == WorkKind::Generate) {
                state.nPast += 1;
                scratch_.argmax.clear();
                scratch_.argmaxLogprob.clear();
                scratch_.logSumExp.clear();
                scratch_.reflection.clear();
                engine_.SummariseInto(logits, scratch_);
                engine_.SetPending(w.seq, scratch_, 0);
                if (AcceptToken(engine_, *w.options, w.maxTokens, w.segment, scratch_.argmax[0], scratch_.argmaxLogprob[0],
                                scratch_.reflection.data())) {
                    Complete(w);
                }
                continue;
            }
            // Prefill.
            w.consumed += 1;
            state.nPast = w.positionBase + static_cast<int32_t>(w.consumed);
            if (logits != nullptr) engine_.SummariseInto(logits, w.rows);
            if (w.consumed == w.tokens.size() && w.rows.argmax.empty()) {
                Fail(w, "INTERNAL", "llama.cpp returned no logits for the last prompt position");
            } else if (w.consumed == w.tokens.size()) {
                engine_.SetPending(w.seq, w.rows, w.rows.argmax.size() - 1);
                Complete(w);
            }
        }
        offset += count;
    }
    return offset;
}

void StepLoop::FailYoungest(const std::vector<StepEntry>& step) {
    Work* youngest = nullptr;
    for (const auto& entry : step) {
        if (!entry.work->done && (youngest == nullptr || entry.work->id > youngest->id)) youngest = entry.work;
    }
    if (youngest == nullptr) return;
    const std::string message = "no free KV cell: the context's " + std::to_string(engine_.ContextTotal()) +
                                " cells are in use and no work could advance; release sequences or use a larger context";
    if (youngest->kind == WorkKind::Generate) {
        youngest->segment.stopReason = "kv_full";
        Complete(*youngest);
    } else {
        Fail(*youngest, "KV_FULL", message);
    }
}

void StepLoop::Run() {
    std::vector<StepEntry> step;
    std::vector<int32_t> owner;
    for (;;) {
        bool notify = false;
        uint64_t seenSubmissions = 0;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
            if (stopping_) return;
            step.clear();
            Schedule(step);
            RemoveFinished();
            notify = !completions_.empty();
            seenSubmissions = submissions_;
        }
        if (notify) notify_();
        if (step.empty()) continue;

        // The batch: generation tokens first, then prefill chunks. Only this thread touches the
        // works in `step` and the sequence states' positions until the next lock.
        batch_.Clear();
        owner.clear();
        std::vector<char> seen(static_cast<size_t>(engine_.Sequences()), 0);
        uint64_t busy = 0;
        for (size_t e = 0; e < step.size(); ++e) {
            Work& w = *step[e].work;
            if (!seen[static_cast<size_t>(w.seq)]) {
                seen[static_cast<size_t>(w.seq)] = 1;
                busy += 1;
            }
            if (w.kind == WorkKind::Generate) {
                batch_.Add(w.segment.tokens.back(), engine_.State(w.seq).nPast, w.seq, true);
                owner.push_back(static_cast<int32_t>(e));
                continue;
            }
            for (int32_t k = 0; k < step[e].count; ++k) {
                const size_t index = w.consumed + static_cast<size_t>(k);
                const bool last = index + 1 == w.tokens.size();
                batch_.Add(w.tokens[index], w.positionBase + static_cast<int32_t>(index), w.seq, w.allPositions || last);
                owner.push_back(static_cast<int32_t>(e));
            }
        }

        std::string failure;
        const int32_t decoded = DecodeStep(step, owner, failure);
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (decoded > 0) {
                EngineStats& stats = engine_.Stats();
                stats.steps += 1;
                stats.slotSteps += static_cast<uint64_t>(engine_.Sequences());
                stats.busySlotSteps += busy;
            }
            if (!failure.empty()) {
                for (const auto& entry : step) {
                    if (!entry.work->done) Fail(*entry.work, "DECODE_FAILED", failure);
                }
            } else if (decoded == 0) {
                // Nothing fitted: give the JS side a moment to release slots, then end the youngest work.
                const bool more = wake_.wait_for(lock, std::chrono::milliseconds(100),
                                                 [&] { return stopping_ || submissions_ != seenSubmissions; });
                if (!more) FailYoungest(step);
            }
            RemoveFinished();
            notify = !completions_.empty();
            seenSubmissions = submissions_;
        }
        if (notify) {
            notify_();
            // Finished work usually has a follow-up (a decision's candidates, a freed slot's next
            // question): give JavaScript a moment to submit it so it joins the very next step
            // instead of leaving its slots idle for one. Bounded, and skipped when nothing finished.
            const auto waitStart = std::chrono::steady_clock::now();
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait_for(lock, engine_.Options().reactionWindow, [&] { return stopping_ || submissions_ != seenSubmissions; });
            engine_.Stats().reactionWaitUs += static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - waitStart).count());
        }
    }
}

}  // namespace selfrag
