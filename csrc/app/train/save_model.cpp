#include "csrc/app/train/save_model.h"

#include <filesystem>
#include <fstream>

#include "csrc/io/errors.h"
#include "csrc/io/safetensors.h"

namespace mamba_lrp {
namespace train {

void save_model_dir(const std::string& dir, const nlohmann::json& config,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) throw io::InputError(dir + ": cannot create the output directory");
  const fs::path root(dir);
  {
    std::ofstream out(root / "config.json");
    if (!out) throw io::InputError((root / "config.json").string() + ": cannot write");
    out << config.dump(2) << "\n";
  }
  std::vector<std::pair<std::string, at::Tensor>> stored;
  for (const auto& [name, t] : tensors) stored.emplace_back(name, t.detach().contiguous());
  io::save_safetensors((root / "model.safetensors").string(), stored, {{"format", "pt"}});
  if (!tokenizer_path.empty()) {
    const fs::path target = root / "tokenizer.json";
    if (!fs::exists(target) || !fs::equivalent(tokenizer_path, target)) {
      fs::copy_file(tokenizer_path, target, fs::copy_options::overwrite_existing, ec);
      if (ec) throw io::InputError(tokenizer_path + ": cannot copy to " + target.string() + " (" + ec.message() + ")");
    }
  }
}

}  // namespace train
}  // namespace mamba_lrp
