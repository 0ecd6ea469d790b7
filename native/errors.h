// Errors cross into JavaScript as the SelfRagError class that lib/ hands to the addon at
// init (the better-sqlite3 pattern), so C++ throws the right type with a machine-readable code.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
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

// Arguments of the wrong kind (a Uint8Array where an Int32Array is written, a string for a count)
// are a TypeError, values out of range (an array too short for rows x vocab) a RangeError, as
// JavaScript's own built-ins report them; both carry code INVALID_ARGUMENT and name the argument.
[[noreturn]] inline void ThrowArgumentError(Napi::Env env, bool range, const std::string& message) {
    Napi::Error error = range ? static_cast<Napi::Error>(Napi::RangeError::New(env, message))
                              : static_cast<Napi::Error>(Napi::TypeError::New(env, message));
    error.Set("code", Napi::String::New(env, "INVALID_ARGUMENT"));
    throw error;
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
    if (value.IsNumber()) return "the number " + value.ToString().Utf8Value();
    if (value.IsString()) return "a string";
    if (value.IsBoolean()) return "a boolean";
    if (value.IsFunction()) return "a function";
    return "an object";
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

// The typed array `name` must be exactly of element type T (TypeError otherwise) and hold at least
// `minLength` elements (RangeError otherwise): the addon writes and reads through T*.
template <typename T>
Napi::TypedArrayOf<T> ArgTypedArray(Napi::Env env, const Napi::Value& value, const std::string& name, uint64_t minLength = 0,
                                    const std::string& why = std::string()) {
    const napi_typedarray_type type = TypedArrayKind<T>::type;
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
        ThrowArgumentError(env, false, name + " must be a" + (type == napi_int32_array ? "n " : " ") + TypedArrayName(type) +
                                           ", got " + DescribeValue(value));
    }
    Napi::TypedArrayOf<T> array = value.As<Napi::TypedArrayOf<T>>();
    if (static_cast<uint64_t>(array.ElementLength()) < minLength) {
        ThrowArgumentError(env, true, name + " holds " + std::to_string(array.ElementLength()) + " elements but needs at least " +
                                          std::to_string(minLength) + (why.empty() ? std::string() : " (" + why + ")"));
    }
    return array;
}

// An integer argument in [min, max]: TypeError when not a number, RangeError otherwise.
inline int64_t ArgInteger(Napi::Env env, const Napi::Value& value, const std::string& name, int64_t min, int64_t max) {
    if (!value.IsNumber()) ThrowArgumentError(env, false, name + " must be a number, got " + DescribeValue(value));
    const double x = value.As<Napi::Number>().DoubleValue();
    if (!(x >= static_cast<double>(min) && x <= static_cast<double>(max)) || std::floor(x) != x) {
        ThrowArgumentError(env, true, name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                                          ", got " + value.ToString().Utf8Value());
    }
    return static_cast<int64_t>(x);
}

}  // namespace selfrag
