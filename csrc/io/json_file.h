// Reading a JSON file with errors that name it (config.json, composites, indexes).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace mamba_lrp {
namespace io {

// Throws InputError "PATH: cannot open[ (hint)]" or "PATH: invalid JSON (...)".
nlohmann::json read_json_file(const std::string& path, const std::string& hint_when_missing = "");

}  // namespace io
}  // namespace mamba_lrp
