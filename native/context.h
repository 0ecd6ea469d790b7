// Context: the JS face of a SequenceEngine and its StepLoop. Work is submitted from the JS
// thread at any time (validated and copied here) and joins the loop's next step; each finished
// item comes back through one thread-safe function as soon as it finishes, not when the whole
// batch does. Exported to JS as `Context`.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "sequence_engine.h"
#include "step_loop.h"

namespace selfrag {

class Model;

class Context : public Napi::ObjectWrap<Context> {
public:
    static Napi::Function Define(Napi::Env env);
    explicit Context(const Napi::CallbackInfo& info);
    ~Context() override;

private:
    Napi::Value Submit(const Napi::CallbackInfo& info);
    Napi::Value Cancel(const Napi::CallbackInfo& info);
    Napi::Value SequenceInfo(const Napi::CallbackInfo& info);
    Napi::Value Info(const Napi::CallbackInfo& info);
    Napi::Value Stats(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);

    void EnsureUsable(Napi::Env env) const;
    // On the JS thread: hands finished work to the JS callback.
    void Deliver(Napi::Env env);
    void Free(Napi::Env env, bool deliver);

    std::unique_ptr<SequenceEngine> engine_;
    std::unique_ptr<StepLoop> loop_;
    Napi::ThreadSafeFunction tsfn_;
    Napi::FunctionReference onComplete_;
    std::atomic<bool> deliveryQueued_{false};
    uint64_t nextId_ = 1;
    uint64_t outstanding_ = 0;  // submitted, not yet delivered (JS thread only)
    int64_t reportedBytes_ = 0;
};

}  // namespace selfrag
