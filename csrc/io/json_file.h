// Reading a JSON file with errors that name it (config.json, composites, indexes).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace mamba_lrp {
namespace io {

[[noreturn]] void throw_config_type_error(const std::string& origin, const char* key, const std::string& value,
                                          const char* what);

// JSON text as Python's json module writes it: strict JSON, plus the bare words Infinity,
// -Infinity and NaN in value positions (Hugging Face configs hold time_step_limit
// [0.0, Infinity]); anywhere else they are a parse error (nlohmann::json::exception).
nlohmann::json parse_json_allowing_nonfinite(const std::string& text);

// Throws InputError "PATH: cannot open[ (hint)]" or "PATH: invalid JSON (...)". Reads the
// JSON of parse_json_allowing_nonfinite.
nlohmann::json read_json_file(const std::string& path, const std::string& hint_when_missing = "");

// j[key] as T, `fallback` when absent or null; InputError naming `origin` and the key when it
// has the wrong type.
template <typename T>
T config_value(const nlohmann::json& j, const char* key, T fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw_config_type_error(origin, key, j[key].dump(), "has the wrong type");
  }
}

// An integer key: floats such as 2.5 are refused rather than truncated.
int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& origin);

// An integer key within [lo, hi], checked as it is read, before any arithmetic uses it
// (InputError "ORIGIN: config key "KEY" must be in [lo, hi], got V" otherwise).
int64_t config_int_in(const nlohmann::json& j, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                      const std::string& origin);

}  // namespace io
}  // namespace mamba_lrp
