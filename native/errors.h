// Errors cross into JavaScript as the SelfRagError class that lib/ hands to the addon at
// init (the better-sqlite3 pattern), so C++ throws the right type with a machine-readable code.
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>

namespace selfrag {

// Thrown on worker threads and in plain C++ code; converted to a JS SelfRagError at the boundary.
class EngineError : public std::runtime_error {
public:
    EngineError(std::string code, const std::string& message)
        : std::runtime_error(message), code_(std::move(code)) {}
    const std::string& code() const { return code_; }

private:
    std::string code_;
};

// Per-addon-instance state (napi instance data): no process-wide globals.
struct AddonData {
    Napi::FunctionReference errorClass;
    Napi::FunctionReference modelClass;
    Napi::FunctionReference contextClass;
};

inline Napi::Value MakeError(Napi::Env env, const std::string& code, const std::string& message) {
    AddonData* data = env.GetInstanceData<AddonData>();
    if (data != nullptr && !data->errorClass.IsEmpty()) {
        return data->errorClass.New({Napi::String::New(env, message), Napi::String::New(env, code)});
    }
    Napi::Error error = Napi::Error::New(env, message);
    error.Set("code", Napi::String::New(env, code));
    return error.Value();
}

inline Napi::Value MakeError(Napi::Env env, const EngineError& error) {
    return MakeError(env, error.code(), error.what());
}

[[noreturn]] inline void ThrowJs(Napi::Env env, const std::string& code, const std::string& message) {
    throw Napi::Error(env, MakeError(env, code, message));
}

}  // namespace selfrag
