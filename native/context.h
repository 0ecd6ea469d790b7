// Context: the JS face of a SequenceEngine. Validates and copies inputs on the JS thread, runs
// evaluate()/generate() on the libuv pool (one operation at a time per context) and hands back
// typed arrays. Exported to JS as `Context`.
#pragma once

#include <napi.h>

#include <memory>

#include "sequence_engine.h"

namespace selfrag {

class Model;

class Context : public Napi::ObjectWrap<Context> {
public:
    static Napi::Function Define(Napi::Env env);
    explicit Context(const Napi::CallbackInfo& info);
    ~Context() override;

    SequenceEngine& Engine() { return *engine_; }
    void SetBusy(bool busy) { busy_ = busy; }

private:
    Napi::Value Evaluate(const Napi::CallbackInfo& info);
    Napi::Value Generate(const Napi::CallbackInfo& info);
    Napi::Value Fork(const Napi::CallbackInfo& info);
    Napi::Value Trim(const Napi::CallbackInfo& info);
    Napi::Value Release(const Napi::CallbackInfo& info);
    Napi::Value SequenceInfo(const Napi::CallbackInfo& info);
    Napi::Value Info(const Napi::CallbackInfo& info);
    Napi::Value Stats(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);

    void EnsureUsable(Napi::Env env) const;
    void Free();

    std::unique_ptr<SequenceEngine> engine_;
    bool busy_ = false;
    int64_t reportedBytes_ = 0;
};

}  // namespace selfrag
