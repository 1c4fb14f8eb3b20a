#include "csrc/app/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>

#include "csrc/io/errors.h"
#include "csrc/io/safetensors.h"

namespace mamba_lrp {
namespace train {

namespace {

at::Tensor load_int64(const io::SafetensorsFile& f, const std::string& name, int64_t rank) {
  const io::TensorInfo& info = f.info(name);  // io::InputError when absent
  if (info.scalar_type != at::kLong)
    throw io::InputError(f.path() + ": tensor '" + name + "' must be int64 (I64), got " + info.dtype);
  at::Tensor t = f.load(name);
  if (t.dim() != rank)
    throw io::InputError(f.path() + ": tensor '" + name + "' must have " + std::to_string(rank) + " dimension(s), got shape " +
                     io::shape_str(t));
  return t;
}

void check_labels(const io::SafetensorsFile& f, const at::Tensor& labels, int64_t batch, int64_t num_classes) {
  if (labels.size(0) != batch)
    throw io::InputError(f.path() + ": tensor 'labels' has " + std::to_string(labels.size(0)) + " entries for " +
                     std::to_string(batch) + " examples");
  if (batch == 0) throw io::InputError(f.path() + ": the data set is empty");
  const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes)
    throw io::InputError(f.path() + ": tensor 'labels' must lie in [0, " + std::to_string(num_classes) + "), got values in [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

}  // namespace

Dataset load_sequence_data(const std::string& path, int64_t vocab_size, int64_t num_classes) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  Dataset d;
  d.inputs = load_int64(f, "input_ids", 2);  // (B, L)
  const int64_t B = d.inputs.size(0), L = d.inputs.size(1);
  if (L == 0) throw io::InputError(path + ": tensor 'input_ids' has length 0");
  if (f.contains("attention_mask")) {
    d.mask = load_int64(f, "attention_mask", 2);  // (B, L)
    if (d.mask.sizes() != d.inputs.sizes())
      throw io::InputError(path + ": tensor 'attention_mask' must have the shape of input_ids " + io::shape_str(d.inputs) +
                       ", got " + io::shape_str(d.mask));
    if (B > 0 && ((d.mask != 0) & (d.mask != 1)).any().item<bool>())
      throw io::InputError(path + ": tensor 'attention_mask' must hold only 0 and 1");
    // Left padding: the class logit is read at the last position, which must be a real token.
    if (B > 0 && (d.mask.select(1, L - 1) == 0).any().item<bool>())
      throw io::InputError(path + ": tensor 'attention_mask' must be left-padded (the last position of every row real)");
  } else {
    d.mask = at::ones_like(d.inputs);
  }
  if (B > 0) {
    const int64_t lo = d.inputs.min().item<int64_t>(), hi = d.inputs.max().item<int64_t>();
    if (lo < 0 || hi >= vocab_size)
      throw io::InputError(path + ": tensor 'input_ids' must lie in [0, " + std::to_string(vocab_size) +
                       ") (the model's vocab_size), got values in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  d.labels = load_int64(f, "labels", 1);
  check_labels(f, d.labels, B, num_classes);
  return d;
}

Dataset load_image_data(const std::string& path, int64_t channels, int64_t image_size, int64_t num_classes,
                        at::ScalarType dtype) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const io::TensorInfo& info = f.info("pixel_values");
  if (!at::isFloatingType(info.scalar_type))
    throw io::InputError(path + ": tensor 'pixel_values' must be floating point, got " + info.dtype);
  Dataset d;
  d.inputs = f.load("pixel_values", dtype);  // (B, C, H, W)
  if (d.inputs.dim() != 4 || d.inputs.size(1) != channels || d.inputs.size(2) != image_size ||
      d.inputs.size(3) != image_size)
    throw io::InputError(path + ": tensor 'pixel_values' must have shape (batch, " + std::to_string(channels) + ", " +
                     std::to_string(image_size) + ", " + std::to_string(image_size) + ") for this model, got " +
                     io::shape_str(d.inputs));
  if (!at::isfinite(d.inputs).all().item<bool>()) throw io::InputError(path + ": tensor 'pixel_values' holds NaN or inf");
  d.labels = load_int64(f, "labels", 1);
  check_labels(f, d.labels, d.inputs.size(0), num_classes);
  return d;
}

double accuracy(const Classifier& model, const Dataset& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, data.size() - start);
    at::Tensor mask = data.mask.defined() ? data.mask.narrow(0, start, n) : at::Tensor();
    at::Tensor pred = model.logits(data.inputs.narrow(0, start, n), mask).argmax(1).cpu();  // (n)
    correct += (pred == data.labels.narrow(0, start, n)).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

std::vector<EpochStats> train_classifier(const Classifier& model, const Dataset& train, const Dataset* test,
                                         const TrainOptions& o) {
  if (o.epochs < 1) throw io::InputError("--epochs must be at least 1");
  if (o.batch_size < 1) throw io::InputError("--batch-size must be at least 1");
  if (!(o.lr > 0)) throw io::InputError("--lr must be positive");
  std::vector<at::Tensor> params;
  for (const auto& p : model.parameters) params.push_back(p.second);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(o.lr));
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  std::vector<EpochStats> history;
  bool dumped = false;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor order = at::randperm(train.size(), gen, at::TensorOptions().dtype(at::kLong));  // (N)
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t start = 0; start < train.size(); start += o.batch_size) {
      const int64_t n = std::min(o.batch_size, train.size() - start);
      at::Tensor idx = order.narrow(0, start, n);
      at::Tensor inputs = train.inputs.index_select(0, idx);
      at::Tensor mask = train.mask.defined() ? train.mask.index_select(0, idx) : at::Tensor();
      at::Tensor labels = train.labels.index_select(0, idx);  // (n)
      adam.zero_grad();
      at::Tensor logits = model.logits(inputs, mask);          // (n, classes)
      at::Tensor loss = at::cross_entropy_loss(logits, labels.to(logits.device()));
      loss.backward();
      if (!o.dump_grads.empty() && !dumped) {
        std::vector<std::pair<std::string, at::Tensor>> grads{{"loss", loss.detach().reshape({1})}};
        for (const auto& p : model.parameters)
          grads.emplace_back("grad." + p.first, p.second.grad().defined() ? p.second.grad().clone()
                                                                          : at::zeros_like(p.second));
        io::save_safetensors(o.dump_grads, grads);
        dumped = true;
      }
      adam.step();
      loss_sum += loss.item<double>() * static_cast<double>(n);
      correct += (logits.detach().argmax(1).cpu() == labels).sum().item<int64_t>();
    }
    EpochStats s;
    s.epoch = epoch;
    s.loss = loss_sum / static_cast<double>(train.size());
    s.train_accuracy = static_cast<double>(correct) / static_cast<double>(train.size());
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (test) s.test_accuracy = accuracy(model, *test, std::max<int64_t>(o.batch_size, 64));
    if (o.verbose) {
      std::printf("epoch %d/%lld  loss %.4f  train_acc %.4f", epoch, static_cast<long long>(o.epochs), s.loss,
                  s.train_accuracy);
      if (test) std::printf("  test_acc %.4f", s.test_accuracy);
      std::printf("  %.1fs\n", s.seconds);
      std::fflush(stdout);
    }
    history.push_back(s);
  }
  return history;
}

}  // namespace train
}  // namespace mamba_lrp
