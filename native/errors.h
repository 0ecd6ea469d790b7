// Errors cross into JavaScript as the SelfRagError class that lib/ hands to the addon at
// init (the better-sqlite3 pattern), so C++ throws the right type with a machine-readable code.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <initializer_list>
#include <string>
#include <vector>

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

inline const char* TypedArrayName(napi_typedarray_type type) {
    switch (type) {
        case napi_int8_array: return "Int8Array";
        case napi_uint8_array: return "Uint8Array";
        case napi_uint8_clamped_array: return "Uint8ClampedArray";
        case napi_int16_array: return "Int16Array";
        case napi_uint16_array: return "Uint16Array";
        case napi_int32_array: return "Int32Array";
        case napi_uint32_array: return "Uint32Array";
        case napi_float32_array: return "Float32Array";
        case napi_float64_array: return "Float64Array";
        case napi_bigint64_array: return "BigInt64Array";
        case napi_biguint64_array: return "BigUint64Array";
        default: return "typed array";
    }
}

// "a Uint8Array of 4 elements", "a string", "undefined": what an argument was, for messages.
inline std::string DescribeValue(const Napi::Value& value) {
    if (value.IsTypedArray()) {
        const Napi::TypedArray array = value.As<Napi::TypedArray>();
        return std::string("a ") + TypedArrayName(array.TypedArrayType()) + " of " + std::to_string(array.ElementLength()) + " elements";
    }
    if (value.IsUndefined()) return "undefined";
    if (value.IsNull()) return "null";
    if (value.IsArray()) return "an Array";
    if (value.IsNumber()) {
        const double x = value.As<Napi::Number>().DoubleValue();
        if (std::isnan(x)) return "NaN";
        if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
        if (std::floor(x) == x && std::fabs(x) < 1e15) return "the number " + std::to_string(static_cast<int64_t>(x));
        return "the number " + std::to_string(x);
    }
    if (value.IsString()) return "a string";
    if (value.IsBoolean()) return "a boolean";
    if (value.IsFunction()) return "a function";
    if (value.IsSymbol()) return "a symbol";
    if (value.IsBigInt()) return "a bigint";
    return "an object";
}

// ---------------------------------------------------------------------------------------------
// The addon's one argument-check idiom (better-sqlite3's REQUIRE_ARGUMENT_* in function form).
// The native surface is callable directly (loadAddon()), so every value from JavaScript goes
// through one of these before C++ uses it: a failure throws the SelfRagError class handed over at
// init, code INVALID_ARGUMENT, with a message naming the argument as JavaScript spells it
// ("works[2].tokens", "out.argmax") and saying what it was. Nothing is coerced (no ToNumber /
// ToString / ToBoolean on caller values: a symbol or a throwing valueOf would escape as a TypeError).
// Conditions the TypeScript plan already guarantees are written as Require(...) too: cheap
// assertions in the same idiom, so a direct caller gets the same coded error, never a crash.
// Errors with their own code (SEQUENCE_OUT_OF_RANGE, INVALID_TOKEN, CONTEXT_OVERFLOW) stay where
// the engine decides them.
// ---------------------------------------------------------------------------------------------

[[noreturn]] inline void ThrowInvalidArgument(Napi::Env env, const std::string& message) {
    ThrowJs(env, "INVALID_ARGUMENT", message);
}

// `name` + " " + `requirement` when `ok` is false: Require(env, n > 0, "kvCells", "must be positive").
inline void Require(Napi::Env env, bool ok, const std::string& name, const std::string& requirement) {
    if (!ok) ThrowInvalidArgument(env, name + " " + requirement);
}

// Absent: undefined (a missing property or argument). Optional* helpers take their fallback then.
inline bool IsAbsent(const Napi::Value& value) { return value.IsUndefined(); }

inline Napi::Object RequireObject(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsObject()) ThrowInvalidArgument(env, name + " must be an object, got " + DescribeValue(value));
    return value.As<Napi::Object>();
}

inline Napi::Array RequireArray(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsArray()) ThrowInvalidArgument(env, name + " must be an Array, got " + DescribeValue(value));
    return value.As<Napi::Array>();
}

inline Napi::Function RequireFunction(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsFunction()) ThrowInvalidArgument(env, name + " must be a function, got " + DescribeValue(value));
    return value.As<Napi::Function>();
}

inline std::string RequireString(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsString()) ThrowInvalidArgument(env, name + " must be a string, got " + DescribeValue(value));
    return value.As<Napi::String>().Utf8Value();
}

// One of `choices` (a string); the message lists them.
inline std::string RequireChoice(Napi::Env env, const Napi::Value& value, const std::string& name,
                                 std::initializer_list<const char*> choices) {
    std::string list;
    size_t i = 0;
    for (const char* choice : choices) {
        if (value.IsString() && value.As<Napi::String>().Utf8Value() == choice) return choice;
        list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + std::string("\"") + choice + "\"";
        ++i;
    }
    ThrowInvalidArgument(env, name + " must be " + list + ", got " +
                                  (value.IsString() ? "\"" + value.As<Napi::String>().Utf8Value() + "\"" : DescribeValue(value)));
}

inline std::string OptionalChoice(Napi::Env env, const Napi::Value& value, const std::string& name,
                                  std::initializer_list<const char*> choices, const char* fallback) {
    return IsAbsent(value) ? std::string(fallback) : RequireChoice(env, value, name, choices);
}

inline bool RequireBoolean(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsBoolean()) ThrowInvalidArgument(env, name + " must be a boolean, got " + DescribeValue(value));
    return value.As<Napi::Boolean>().Value();
}

inline bool OptionalBoolean(Napi::Env env, const Napi::Value& value, const std::string& name, bool fallback) {
    return IsAbsent(value) ? fallback : RequireBoolean(env, value, name);
}

// Any JavaScript number (NaN and the infinities included: log-probs may be -Infinity).
inline double RequireNumber(Napi::Env env, const Napi::Value& value, const std::string& name) {
    if (!value.IsNumber()) ThrowInvalidArgument(env, name + " must be a number, got " + DescribeValue(value));
    return value.As<Napi::Number>().DoubleValue();
}

// An integer in [min, max]. Never truncated or wrapped (Int32Value would turn 2^32 into slot 0).
inline int64_t RequireInteger(Napi::Env env, const Napi::Value& value, const std::string& name, int64_t min, int64_t max) {
    if (!value.IsNumber()) ThrowInvalidArgument(env, name + " must be an integer, got " + DescribeValue(value));
    const double x = value.As<Napi::Number>().DoubleValue();
    if (!(x >= static_cast<double>(min) && x <= static_cast<double>(max)) || std::floor(x) != x) {
        ThrowInvalidArgument(env, name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", got " +
                                      DescribeValue(value));
    }
    return static_cast<int64_t>(x);
}

inline int32_t RequireInt32(Napi::Env env, const Napi::Value& value, const std::string& name, int32_t min = INT32_MIN,
                            int32_t max = INT32_MAX) {
    return static_cast<int32_t>(RequireInteger(env, value, name, min, max));
}

inline int32_t OptionalInt32(Napi::Env env, const Napi::Value& value, const std::string& name, int32_t min, int32_t max,
                             int32_t fallback) {
    return IsAbsent(value) ? fallback : RequireInt32(env, value, name, min, max);
}

// An index into something of `count` elements (the message says what: "the 16 reflection ids").
inline int32_t RequireIndex(Napi::Env env, const Napi::Value& value, const std::string& name, size_t count, const std::string& of) {
    const int32_t index = RequireInt32(env, value, name, 0, INT32_MAX);
    Require(env, static_cast<size_t>(index) < count, name,
            "must index " + of + " (0.." + std::to_string(static_cast<int64_t>(count) - 1) + "), got " + std::to_string(index));
    return index;
}

template <typename T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<float> {
    static constexpr napi_typedarray_type type = napi_float32_array;
};
template <>
struct TypedArrayKind<int32_t> {
    static constexpr napi_typedarray_type type = napi_int32_array;
};

// A typed array of exactly element type T holding at least `minLength` elements (`why` says
// where the length comes from): the addon reads and writes through T*, so a Uint8Array taken for
// an Int32Array, or a short one, would be read or written out of bounds.
template <typename T>
Napi::TypedArrayOf<T> RequireTypedArray(Napi::Env env, const Napi::Value& value, const std::string& name, uint64_t minLength = 0,
                                        const std::string& why = std::string()) {
    const napi_typedarray_type type = TypedArrayKind<T>::type;
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
        ThrowInvalidArgument(env, name + " must be a" + (type == napi_int32_array ? "n " : " ") + TypedArrayName(type) + ", got " +
                                      DescribeValue(value));
    }
    Napi::TypedArrayOf<T> array = value.As<Napi::TypedArrayOf<T>>();
    if (static_cast<uint64_t>(array.ElementLength()) < minLength) {
        ThrowInvalidArgument(env, name + " holds " + std::to_string(array.ElementLength()) + " elements but needs at least " +
                                      std::to_string(minLength) + (why.empty() ? std::string() : " (" + why + ")"));
    }
    return array;
}

// An Int32Array copied out (for work that outlives the call, on the loop thread).
inline std::vector<int32_t> RequireInt32Vector(Napi::Env env, const Napi::Value& value, const std::string& name) {
    const Napi::Int32Array array = RequireTypedArray<int32_t>(env, value, name);
    return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

}  // namespace selfrag
