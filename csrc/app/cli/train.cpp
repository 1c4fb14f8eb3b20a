// mamba-lrp train: a Mamba classifier or a Vision Mamba trained with Adam and cross-entropy
// (csrc/app/train/trainer.h), saved as a model directory that explain / evaluate read.
//
//   mamba-lrp train (--init CONFIG.json | --model DIR) --data TRAIN.safetensors [--test TEST.safetensors]
//       --out DIR [--epochs 3] [--lr 1e-3] [--batch-size 32] [--seed 0] [--tokenizer FILE]
//       [--dtype float32|float64] [--dump-grads FILE.safetensors] [--quiet]
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"
#include "csrc/app/train/save_model.h"
#include "csrc/app/train/trainer.h"
#include "models/init.h"
#include "models/mamba.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {
namespace cli {

namespace {

struct TrainArgs {
  std::string init, model, data, test, out, tokenizer, dtype = "float32", dump_grads, device = "cpu";
  std::string epochs = "3", lr = "1e-3", batch_size = "32", seed = "0";
  bool quiet = false;
};

TrainArgs parse_train_args(int argc, char** argv) {
  TrainArgs a;
  const std::map<std::string, std::string*> values = {
      {"--init", &a.init},         {"--model", &a.model},     {"--data", &a.data},
      {"--test", &a.test},         {"--out", &a.out},         {"--tokenizer", &a.tokenizer},
      {"--dtype", &a.dtype},       {"--epochs", &a.epochs},   {"--lr", &a.lr},
      {"--batch-size", &a.batch_size}, {"--seed", &a.seed},   {"--dump-grads", &a.dump_grads},
      {"--device", &a.device}};
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--quiet") {
      a.quiet = true;
      continue;
    }
    auto it = values.find(flag);
    if (it == values.end()) throw io::InputError("train: unknown option '" + flag + "'");
    if (i + 1 >= argc) throw io::InputError("train: option " + flag + " needs a value");
    *it->second = argv[++i];
  }
  if (a.init.empty() == a.model.empty()) throw io::InputError("train needs exactly one of --init CONFIG.json and --model DIR");
  if (a.data.empty()) throw io::InputError("train needs --data TRAIN.safetensors");
  if (a.out.empty()) throw io::InputError("train needs --out DIR");
  if (a.dtype != "float32" && a.dtype != "float64") throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  if (!a.tokenizer.empty() && !std::filesystem::is_regular_file(a.tokenizer))
    throw io::InputError(a.tokenizer + ": --tokenizer file not found");
  return a;
}

int64_t config_int(const nlohmann::json& j, const char* key, const std::string& origin) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw io::InputError(origin + ": config key \"" + key + "\" must be an integer (the number of classes)");
  const int64_t v = j[key].get<int64_t>();
  if (v < 2) throw io::InputError(origin + ": config key \"" + key + "\" must be at least 2, got " + std::to_string(v));
  return v;
}

template <typename Module>
std::vector<std::pair<std::string, at::Tensor>> trainable(Module& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    item.value().set_requires_grad(true);
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

void write_log(const std::string& out_dir, const std::vector<train::EpochStats>& history, double seconds,
               const TrainArgs& a, int64_t n_train, int64_t n_test) {
  nlohmann::json log;
  log["train_data"] = a.data;
  log["test_data"] = a.test;
  log["train_examples"] = n_train;
  log["test_examples"] = n_test;
  log["epochs"] = history.size();
  log["lr"] = a.lr;
  log["batch_size"] = a.batch_size;
  log["seed"] = a.seed;
  log["dtype"] = a.dtype;
  log["train_seconds"] = seconds;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : history) {
    nlohmann::json r{{"epoch", s.epoch}, {"loss", s.loss}, {"train_accuracy", s.train_accuracy}, {"seconds", s.seconds}};
    if (!std::isnan(s.test_accuracy)) r["test_accuracy"] = s.test_accuracy;
    rows.push_back(r);
  }
  log["history"] = rows;
  if (!history.empty() && !std::isnan(history.back().test_accuracy)) log["test_accuracy"] = history.back().test_accuracy;
  std::ofstream f(std::filesystem::path(out_dir) / "train_log.json");
  f << log.dump(2) << "\n";
}

}  // namespace

int run_train(int argc, char** argv) {
  const TrainArgs a = parse_train_args(argc, argv);
  train::TrainOptions o;
  o.epochs = parse_int(a.epochs, "--epochs");
  o.batch_size = parse_int(a.batch_size, "--batch-size");
  o.lr = parse_double(a.lr, "--lr");
  const int64_t seed = parse_int(a.seed, "--seed");
  if (seed < 0) throw io::InputError("--seed must be non-negative");
  o.seed = static_cast<uint64_t>(seed);
  o.dump_grads = a.dump_grads;
  o.verbose = !a.quiet;
  if (o.epochs < 1) throw io::InputError("--epochs must be at least 1");
  if (o.batch_size < 1) throw io::InputError("--batch-size must be at least 1");
  if (!(o.lr > 0)) throw io::InputError("--lr must be positive");
  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const at::Device device = parse_device(a.device, a.dtype);

  const std::string config_path =
      a.init.empty() ? (std::filesystem::path(a.model) / "config.json").string() : a.init;
  nlohmann::json config = io::read_json_file(config_path);
  if (!config.is_object()) throw io::InputError(config_path + ": config.json must hold a JSON object");
  const std::string kind = a.init.empty() ? read_model_type(a.model) : config.value("model_type", std::string("mamba"));
  torch::manual_seed(o.seed);

  train::Classifier classifier;
  train::Dataset train_data, test_data;
  std::string tokenizer = a.tokenizer;

  // Both kinds keep their module alive in the lambdas' captures.
  if (kind == "vim") {
    if (!a.tokenizer.empty()) throw io::InputError("--tokenizer is for Mamba language models, not Vim");
    VisionMamba model{nullptr};
    if (a.init.empty()) {
      model = load_vision_mamba(a.model, dtype);
    } else {
      config_int(config, "num_classes", config_path);
      model = VisionMamba(VimConfig::from_json(config, config_path));
      init_vision_mamba(model);
      model->to(dtype);
    }
    const VimConfig& c = model->config();
    if (c.num_classes() < 2) throw io::InputError(config_path + ": a Vim to train needs num_classes >= 2");
    config["model_type"] = "vim";
    train_data = train::load_image_data(a.data, c.in_chans(), c.img_size(), c.num_classes(), dtype);
    if (!a.test.empty()) test_data = train::load_image_data(a.test, c.in_chans(), c.img_size(), c.num_classes(), dtype);
    model->to(device);
    classifier.parameters = trainable(model);
    classifier.logits = [model, device](const at::Tensor& pixels, const at::Tensor&) mutable {
      return model->forward(pixels.to(device));
    };
  } else {
    MambaForCausalLM model{nullptr};
    if (a.init.empty()) {
      model = load_mamba_lm(a.model, dtype);
      const MambaConfig& c = model->config();
      if (!model->lm_head || c.num_outputs() == c.vocab_size())
        throw io::InputError(a.model + ": not a classifier (lm_head.weight must have num_labels rows, not vocab_size)");
      if (tokenizer.empty() && std::filesystem::exists(std::filesystem::path(a.model) / "tokenizer.json"))
        tokenizer = (std::filesystem::path(a.model) / "tokenizer.json").string();
    } else {
      const int64_t num_labels = config_int(config, "num_labels", config_path);
      MambaConfig c = MambaConfig::from_json(config, config_path);
      if (num_labels == c.vocab_size())
        throw io::InputError(config_path + ": num_labels equal to vocab_size would make a language model, not a classifier");
      c.num_outputs(num_labels);
      c.tie_word_embeddings(false);
      model = MambaForCausalLM(c);
      init_mamba_lm(model);
      model->to(dtype);
    }
    const MambaConfig& c = model->config();
    config["model_type"] = c.is_mamba2() ? "mamba2" : "mamba";
    if (c.is_mamba2()) {
      // The JSON writer has no Infinity (it would write null): the default (0, inf) is left
      // to the reader's default, a finite limit is written as it is.
      nlohmann::json& limits = c.state_spaces_names() ? config["ssm_cfg"] : config;
      const char* key = c.state_spaces_names() ? "dt_limit" : "time_step_limit";
      limits.erase(key);
      if (c.time_step_min_limit() > 0 || std::isfinite(c.time_step_max_limit()))
        limits[key] = {c.time_step_min_limit(), std::isfinite(c.time_step_max_limit()) ? c.time_step_max_limit()
                                                                                        : std::numeric_limits<double>::max()};
    }
    config["num_labels"] = c.num_outputs();
    config["tie_word_embeddings"] = false;
    train_data = train::load_sequence_data(a.data, c.vocab_size(), c.num_outputs());
    if (!a.test.empty()) test_data = train::load_sequence_data(a.test, c.vocab_size(), c.num_outputs());
    model->to(device);
    classifier.parameters = trainable(model);
    classifier.logits = [model, device](const at::Tensor& ids, const at::Tensor& mask) mutable {
      at::Tensor h = model->hidden_states(model->embed(ids.to(device)), mask.defined() ? mask.to(device) : mask);  // (B, L, H)
      return model->head(h.select(1, h.size(1) - 1));                // (B, classes): the last position
    };
  }

  if (!a.quiet)
    std::printf("train: %s model, %zu parameter tensors, %lld training / %lld test examples\n", kind.c_str(),
                classifier.parameters.size(), static_cast<long long>(train_data.size()),
                static_cast<long long>(a.test.empty() ? 0 : test_data.size()));
  const auto t0 = std::chrono::steady_clock::now();
  const auto history = train::train_classifier(classifier, train_data, a.test.empty() ? nullptr : &test_data, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  train::save_model_dir(a.out, config, classifier.parameters, tokenizer);
  write_log(a.out, history, seconds, a, train_data.size(), a.test.empty() ? 0 : test_data.size());
  std::printf("saved %s (training %.1fs", a.out.c_str(), seconds);
  if (!a.test.empty()) std::printf(", test accuracy %.4f", history.back().test_accuracy);
  std::printf(")\n");
  return 0;
}

}  // namespace cli
}  // namespace mamba_lrp
