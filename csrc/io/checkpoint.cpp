// The entry of weight loading: a model directory's weight files, Hugging Face shard indexes,
// single safetensors files; torch.save files go to torch_save.cpp.
#include "csrc/io/checkpoint.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include "csrc/io/errors.h"
#include "csrc/io/safetensors.h"
#include "csrc/io/torch_save.h"

namespace mamba_lrp {
namespace io {

namespace fs = std::filesystem;

namespace {

// The error_code forms: a path that cannot be examined (no permission) counts as absent
// rather than throwing a filesystem_error.
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
// On the name as given, not fs::path::extension(), which sees no extension in a name that
// starts with its only dot (".json").
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

StateDict load_safetensors_file(const std::string& path, at::ScalarType dtype) {
  auto f = SafetensorsFile::open(path);
  StateDict out;
  for (const auto& name : f.names()) out[name] = convert_floating(f.load(name), dtype);
  return out;
}

}  // namespace

StateDict load_sharded_checkpoint(const std::string& index_path, at::ScalarType dtype) {
  std::ifstream f(index_path);
  if (!f) throw InputError(index_path + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(index_path + ": invalid JSON: " + first_line(e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw InputError(index_path + ": no \"weight_map\" object");
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw InputError(index_path + ": tensor '" + it.key() + "': shard name is not a string");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard[0] == '/' || shard.find("..") != std::string::npos)
      throw InputError(index_path + ": tensor '" + it.key() + "': shard '" + shard +
                       "' must be a file name relative to the index");
    by_shard[shard].push_back(it.key());
  }
  if (by_shard.empty()) throw InputError(index_path + ": \"weight_map\" is empty");
  for (const auto& s : by_shard)
    if (!is_file(dir / s.first))
      throw InputError(index_path + ": shard '" + s.first + "' (holding tensor '" + s.second.front() +
                       "') does not exist");
  StateDict out;
  for (const auto& s : by_shard) {
    const std::string shard_path = (dir / s.first).string();
    if (ends_with(s.first, ".safetensors")) {
      auto sf = SafetensorsFile::open(shard_path);
      for (const auto& name : s.second) {
        if (!sf.contains(name))
          throw InputError(shard_path + ": tensor '" + name + "' (listed in " + index_path + ") is not in the shard");
        out[name] = convert_floating(sf.load(name), dtype);
      }
    } else {
      StateDict sd = load_torch_checkpoint(shard_path, dtype);
      for (const auto& name : s.second) {
        auto it = sd.find(name);
        if (it == sd.end())
          throw InputError(shard_path + ": tensor '" + name + "' (listed in " + index_path + ") is not in the shard");
        out[name] = it->second;
      }
    }
  }
  return out;
}

StateDict load_state_dict(const std::string& model_dir_or_file, at::ScalarType dtype, const std::string& nested_key) {
  const std::string& p = model_dir_or_file;
  if (!at::isFloatingType(dtype)) throw InputError(p + ": requested dtype must be floating");
  if (is_dir(p)) {
    for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                             "pytorch_model.bin.index.json"}) {
      const std::string f = (fs::path(p) / name).string();
      if (!is_file(f)) continue;
      if (ends_with(f, ".json")) return load_sharded_checkpoint(f, dtype);
      if (ends_with(f, ".safetensors")) return load_safetensors_file(f, dtype);
      return load_torch_checkpoint(f, dtype, nested_key);
    }
    throw InputError(p + ": no model.safetensors, model.safetensors.index.json or pytorch_model.bin in the directory");
  }
  if (!is_file(p)) throw InputError(p + ": no such file or directory");
  if (ends_with(p, ".safetensors")) return load_safetensors_file(p, dtype);
  if (ends_with(p, ".json")) return load_sharded_checkpoint(p, dtype);
  if (torch_save_format(p) != TorchSaveFormat::Unknown) return load_torch_checkpoint(p, dtype, nested_key);
  return load_safetensors_file(p, dtype);
}

}  // namespace io
}  // namespace mamba_lrp
