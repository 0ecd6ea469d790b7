#include "step_loop.h"

#include <algorithm>
#include <chrono>

#include "errors.h"

namespace selfrag {

namespace {

bool Touches(const Work& work, int32_t seq) {
    return work.seq == seq || (work.kind == WorkKind::Fork && work.dst == seq) ||
           std::find(work.shareWith.begin(), work.shareWith.end(), seq) != work.shareWith.end();
}

}  // namespace

StepLoop::StepLoop(SequenceEngine& engine, std::function<void()> notify)
    : engine_(engine),
      notify_(std::move(notify)),
      batch_(engine.Options().stepTokens + engine.Sequences() + std::max(0, engine.Options().stepRowAlign), engine.Sequences()),
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
            // A release only empties the slot: cancelling it would hand the slot back with its KV.
            if (work->kind == WorkKind::Release) continue;
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

StatsSnapshot StepLoop::Snapshot() {
    std::lock_guard<std::mutex> lock(mutex_);
    const EngineStats& s = engine_.Stats();
    StatsSnapshot out;
    out.tokensEvaluated = s.tokensEvaluated.load();
    out.decodeCalls = s.decodeCalls.load();
    out.rowsExtracted = s.rowsExtracted.load();
    out.steps = s.steps.load();
    out.busySlotSteps = s.busySlotSteps.load();
    out.slotSteps = s.slotSteps.load();
    out.generatedTokens = s.generatedTokens.load();
    out.reactionWaitUs = s.reactionWaitUs.load();
    out.decodeUs = s.decodeUs.load();
    out.paddingTokens = s.paddingTokens.load();
    out.pendingWork = pending_.size();
    return out;
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

std::vector<int32_t> StepLoop::SeqsOf(const Work& work) {
    std::vector<int32_t> seqs{work.seq};
    if (work.kind == WorkKind::Fork) seqs.push_back(work.dst);
    seqs.insert(seqs.end(), work.shareWith.begin(), work.shareWith.end());
    return seqs;
}

void StepLoop::Fail(Work& work, const std::string& code, const std::string& message) {
    // A prefill that fails part-way leaves its slots as they were before it started.
    if (work.kind == WorkKind::Prefill && work.started && work.consumed > 0) {
        for (int32_t seq : SeqsOf(work)) {
            engine_.RemoveFrom(seq, work.positionBase);
            SequenceState& state = engine_.State(seq);
            state.nPast = work.positionBase;
            state.hasPending = false;
        }
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
    // Per slot: 0 free, 1 blocked by earlier work, 2 its earlier prefill ends in this step (a
    // following prefill may join the step right after it, at chainEnd).
    std::vector<char> slot(static_cast<size_t>(nSeq), 0);
    std::vector<int32_t> chainEnd(static_cast<size_t>(nSeq), 0);
    // Prefill chunks fill what generation leaves of the step's budget (at least a few tokens, so
    // prefill advances even when generation alone fills the budget).
    const int32_t budget = engine_.Options().stepTokens;
    int32_t generators = 0;
    for (auto& owned : pending_) {
        if (!owned->done && owned->kind == WorkKind::Generate) generators += 1;
    }
    int32_t room = std::max(budget - generators, std::min(16, budget));
    for (auto& owned : pending_) {
        Work& w = *owned;
        if (w.done) continue;
        if (w.cancelled) {
            Fail(w, "ABORTED", "the work was cancelled: its request was aborted");
            continue;
        }
        const std::vector<int32_t> seqs = SeqsOf(w);
        bool blocked = false;
        bool chained = false;
        for (int32_t seq : seqs) {
            const char state = slot[static_cast<size_t>(seq)];
            if (state == 1) blocked = true;
            if (state == 2) chained = true;
        }
        // Only a prefill may follow, in the same step, a prefill of its slot that ends in it; a shared
        // one (a question's common passage prefix after its shared prompt) only when every slot it
        // decodes into ends such a prefill at the same length.
        if (chained && (w.kind != WorkKind::Prefill || w.started)) blocked = true;
        if (chained && !blocked && seqs.size() > 1) {
            for (int32_t seq : seqs) {
                if (slot[static_cast<size_t>(seq)] != 2 || chainEnd[static_cast<size_t>(seq)] != chainEnd[static_cast<size_t>(w.seq)]) blocked = true;
            }
        }
        auto block = [&] {
            for (int32_t seq : seqs) slot[static_cast<size_t>(seq)] = 1;
        };
        if (blocked) {
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
                case WorkKind::Prefill: {
                    if (!w.started) {
                        const int32_t base = chained ? chainEnd[static_cast<size_t>(w.seq)] : engine_.State(w.seq).nPast;
                        for (int32_t seq : w.shareWith) {
                            const int32_t length = chained ? chainEnd[static_cast<size_t>(seq)] : engine_.State(seq).nPast;
                            if (length != base) {
                                throw EngineError("INVALID_ARGUMENT", "a shared prefill needs its slots at the same length: slot " +
                                                                          std::to_string(seq) + " holds " +
                                                                          std::to_string(length) + " tokens, slot " +
                                                                          std::to_string(w.seq) + " " + std::to_string(base));
                            }
                        }
                        engine_.CheckFits(w.seq, base, w.tokens.size());
                        if (w.tokens.empty()) {
                            if (chained) {
                                block();  // nothing to decode, but its slot's earlier prefill has not finished yet
                                break;
                            }
                            Complete(w);
                            break;
                        }
                        w.started = true;
                        w.positionBase = base;
                        for (int32_t seq : seqs) engine_.State(seq).hasPending = false;
                    }
                    const int32_t remaining = static_cast<int32_t>(w.tokens.size() - w.consumed);
                    const int32_t count = std::min(room, remaining);
                    if (count <= 0) {
                        if (w.consumed == 0) w.started = false;  // starts again (and re-checks) in a later step
                        block();
                        break;
                    }
                    step.push_back({&w, count});
                    room -= count;
                    if (count == remaining) {
                        for (int32_t seq : seqs) {
                            slot[static_cast<size_t>(seq)] = 2;
                            chainEnd[static_cast<size_t>(seq)] = w.positionBase + static_cast<int32_t>(w.tokens.size());
                        }
                    } else {
                        block();
                    }
                    break;
                }
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
                    block();
                    break;
                }
            }
        } catch (const EngineError& error) {
            Fail(w, error.code(), error.what());
        }
    }
    // Generation first in the batch, then prefill in submission order (a chained prefill comes
    // after the prefill it continues).
    std::stable_partition(step.begin(), step.end(), [](const StepEntry& e) { return e.work->kind == WorkKind::Generate; });
    return !step.empty();
}

int32_t StepLoop::DecodeStep(const std::vector<StepEntry>& step, const std::vector<int32_t>& owner, std::string& failure) {
    const int32_t total = batch_.Size();
    int32_t offset = 0;
    int32_t viewSize = std::min(total, engine_.BatchSize());
    while (offset < total) {
        const int32_t count = std::min(viewSize, total - offset);
        const auto decodeStarted = std::chrono::steady_clock::now();
        const int32_t ret = engine_.DecodeView(batch_, offset, count);
        const auto decodeUs = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - decodeStarted).count());
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
        engine_.Stats().decodeCalls += 1;
        engine_.Stats().decodeUs += decodeUs;
        int32_t padding = 0;
        for (int32_t j = 0; j < count; ++j) padding += owner[static_cast<size_t>(offset + j)] < 0 ? 1 : 0;
        engine_.Stats().tokensEvaluated += static_cast<uint64_t>(count - padding);
        engine_.Stats().paddingTokens += static_cast<uint64_t>(padding);
        int32_t outputs = 0;  // output rows so far in this view: row k is the k-th token asking for logits
        for (int32_t j = 0; j < count; ++j) {
            if (owner[static_cast<size_t>(offset + j)] < 0) continue;  // padding: no logits row, nothing to apply
            Work& w = *step[static_cast<size_t>(owner[static_cast<size_t>(offset + j)])].work;
            SequenceState& state = engine_.State(w.seq);
            const bool hasRow = view.logits[j] != 0;
            const int32_t outputRow = hasRow ? outputs++ : -1;
            if (hasRow) engine_.Stats().rowsExtracted += 1;
            if (!w.failCode.empty()) continue;  // an earlier row of this work was invalid
            if (w.kind == WorkKind::Generate) {
                state.nPast += 1;
                scratch_.argmax.clear();
                scratch_.argmaxLogprob.clear();
                scratch_.logSumExp.clear();
                scratch_.reflection.clear();
                const RowSummary summary = engine_.SummariseOutput(j, outputRow, scratch_);
                if (summary.status != RowSummary::kOk) {
                    state.hasPending = false;  // no distribution to continue from
                    MarkInvalidRow(w, summary, state.nPast);
                    continue;
                }
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
            for (int32_t seq : w.shareWith) engine_.State(seq).nPast = state.nPast;
            if (hasRow) {
                const RowSummary summary = engine_.SummariseOutput(j, outputRow, w.rows);
                if (summary.status != RowSummary::kOk) {
                    MarkInvalidRow(w, summary, state.nPast);
                    continue;
                }
            }
            if (w.consumed == w.tokens.size() && w.rows.argmax.empty()) {
                Fail(w, "INTERNAL", "llama.cpp returned no logits for the last prompt position");
            } else if (w.consumed == w.tokens.size()) {
                engine_.SetPending(w.seq, w.rows, w.rows.argmax.size() - 1);
                for (int32_t seq : w.shareWith) engine_.SetPending(seq, w.rows, w.rows.argmax.size() - 1);
                Complete(w);
            }
        }
        offset += count;
    }
    return offset;
}

StepLoop::Padding StepLoop::PadStep(const std::vector<StepEntry>& step, std::vector<int32_t>& owner) {
    const int32_t align = engine_.Options().stepRowAlign;
    const int32_t rows = batch_.Size();
    if (align < 2 || rows % align < 2) return {};
    const int32_t pad = align - rows % align;
    // One view, and a cell for every position of every slot (so the slot's own room holds them).
    if (rows + pad > engine_.BatchSize() ||
        static_cast<int64_t>(engine_.ContextTotal()) < static_cast<int64_t>(engine_.Sequences()) * engine_.ContextPerSequence()) {
        return {};
    }
    // A generating slot with room after its token: the padding tokens follow it there, so no real
    // token attends to them (causal), and they are removed after the decode.
    for (const auto& entry : step) {
        const Work& w = *entry.work;
        if (w.kind != WorkKind::Generate) continue;
        const SequenceState& state = engine_.State(w.seq);
        if (state.nPast + 1 + pad > engine_.ContextPerSequence()) continue;
        const llama_token token = w.segment.tokens.back();
        for (int32_t k = 0; k < pad; ++k) {
            batch_.Add(token, state.nPast + 1 + k, w.seq, false);
            owner.push_back(-1);
        }
        return {w.seq, state.nPast + 1, pad};
    }
    return {};
}

void StepLoop::MarkInvalidRow(Work& work, const RowSummary& summary, int32_t position) {
    work.failCode = "NAN_LOGITS";
    work.failMessage = "the model's logits for sequence " + std::to_string(work.seq) + " after position " +
                       std::to_string(position) + " " + InvalidRowReason(summary) +
                       (summary.status == RowSummary::kNaN ? " at index " + std::to_string(summary.badIndex) : std::string()) +
                       ": no token can be chosen from them (broken weights, or an input the model cannot handle)";
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
            const std::vector<int32_t> seqs = SeqsOf(w);
            for (int32_t seq : w.shareWith) {
                if (!seen[static_cast<size_t>(seq)]) {
                    seen[static_cast<size_t>(seq)] = 1;
                    busy += 1;
                }
            }
            for (int32_t k = 0; k < step[e].count; ++k) {
                const size_t index = w.consumed + static_cast<size_t>(k);
                const bool last = index + 1 == w.tokens.size();
                const llama_pos pos = w.positionBase + static_cast<int32_t>(index);
                if (seqs.size() == 1) batch_.Add(w.tokens[index], pos, w.seq, w.allPositions || last);
                else batch_.Add(w.tokens[index], pos, seqs, w.allPositions || last);
                owner.push_back(static_cast<int32_t>(e));
            }
        }

        const Padding padding = PadStep(step, owner);
        std::string failure;
        const int32_t decoded = DecodeStep(step, owner, failure);
        // The throwaway tokens sit after their slot's token: drop their cells before anything else runs.
        if (padding.tokens > 0) engine_.RemoveFrom(padding.seq, padding.from);
        {
            std::unique_lock<std::mutex> lock(mutex_);
            // Work with an invalid logits row fails now that every view of the step is decoded (a
            // prefill's rollback must also drop the tokens of it that later views decoded).
            for (const auto& entry : step) {
                if (!entry.work->done && !entry.work->failCode.empty()) Fail(*entry.work, entry.work->failCode, entry.work->failMessage);
            }
            // A prefill that got no token in (no KV cell, or the prefill it was chained to did not
            // finish) starts again, with fresh checks, when it is next due.
            for (const auto& entry : step) {
                if (entry.work->kind == WorkKind::Prefill && !entry.work->done && entry.work->consumed == 0) entry.work->started = false;
            }
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
