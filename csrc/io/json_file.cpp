#include "csrc/io/json_file.h"

#include <fstream>

#include "csrc/io/errors.h"

namespace mamba_lrp {
namespace io {

nlohmann::json read_json_file(const std::string& path, const std::string& hint_when_missing) {
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open" + (hint_when_missing.empty() ? "" : " (" + hint_when_missing + ")"));
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    throw InputError(path + ": invalid JSON (" + what.substr(0, what.find('\n')) + ")");
  }
}

void throw_config_type_error(const std::string& origin, const char* key, const std::string& value, const char* what) {
  throw InputError(origin + ": config key \"" + key + "\" " + what + " (" + value + ")");
}

int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& origin) {
  if (j.contains(key) && !j[key].is_null() && !j[key].is_number_integer())
    throw_config_type_error(origin, key, j[key].dump(), "must be an integer");
  if (j.contains(key) && j[key].is_number_unsigned() && j[key].get<uint64_t>() > uint64_t(INT64_MAX))
    throw_config_type_error(origin, key, j[key].dump(), "is out of range");
  return config_value<int64_t>(j, key, fallback, origin);
}

int64_t config_int_in(const nlohmann::json& j, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                      const std::string& origin) {
  const int64_t v = config_int(j, key, fallback, origin);
  if (v < lo || v > hi)
    throw InputError(origin + ": config key \"" + key + "\" must be in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + std::to_string(v));
  return v;
}

}  // namespace io
}  // namespace mamba_lrp
