#include "csrc/io/json_file.h"

#include <fstream>

#include "csrc/errors.h"

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

}  // namespace io
}  // namespace mamba_lrp
