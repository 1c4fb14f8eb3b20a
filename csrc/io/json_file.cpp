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
  return config_value<int64_t>(j, key, fallback, origin);
}

}  // namespace io
}  // namespace mamba_lrp
