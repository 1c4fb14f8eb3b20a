// Training a classifier (a Mamba language model with a class head, or a Vision Mamba) with
// Adam and cross-entropy, in the standard propagation mode: the gradients are the exact
// ones (selective_scan's "exact" rule), so training is ordinary backpropagation.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace mamba_lrp {
namespace train {

// A labelled data set as `mamba-lrp train` and `evaluate` read it from safetensors:
//  - sequences: input_ids (B, L) int64, attention_mask (B, L) int64 of 0/1 (left padding;
//    all ones when the file has none), labels (B) int64;
//  - images: pixel_values (B, C, H, W) float32/float64, labels (B) int64.
struct Dataset {
  at::Tensor inputs;  // input_ids or pixel_values
  at::Tensor mask;    // attention_mask; undefined for images
  at::Tensor labels;  // (B) int64
  int64_t size() const { return labels.size(0); }
};

// Throws io::InputError naming the file and the tensor for a missing tensor, a wrong dtype or
// rank, mismatched batch sizes, a mask that is not 0/1 or not left-padded (every row's
// last position must be real), or values out of range (ids >= vocab_size, labels >=
// num_classes). Pixel values are converted to `dtype`.
Dataset load_sequence_data(const std::string& path, int64_t vocab_size, int64_t num_classes);
Dataset load_image_data(const std::string& path, int64_t channels, int64_t image_size, int64_t num_classes,
                        at::ScalarType dtype);

struct TrainOptions {
  int64_t epochs = 3;
  double lr = 1e-3;
  int64_t batch_size = 32;
  uint64_t seed = 0;          // shuffling (the caller seeds the initialisation)
  std::string dump_grads;     // when set: the gradients of the first batch (before its Adam step) go here
  bool verbose = true;        // per-epoch lines on stdout
};

struct EpochStats {
  int epoch = 0;
  double loss = 0;            // mean training loss over the epoch's batches (weighted by batch size)
  double train_accuracy = 0;  // on the training batches as they were seen (model changing)
  double test_accuracy = std::numeric_limits<double>::quiet_NaN();  // NaN without test data
  double seconds = 0;         // training time of the epoch (without the test pass)
};

// The model as the trainer sees it: logits (B, classes) from a batch of inputs and mask
// (mask undefined for images), and the named parameters to optimise (their names are the
// checkpoint's, used by dump_grads). The data stay on the CPU; `logits` takes a CPU batch to
// the model's device and returns the logits there.
struct Classifier {
  std::function<at::Tensor(const at::Tensor& inputs, const at::Tensor& mask)> logits;
  std::vector<std::pair<std::string, at::Tensor>> parameters;
};

// Classification accuracy of `model` on `data`, in batches, without gradients.
double accuracy(const Classifier& model, const Dataset& data, int64_t batch_size);

// Adam on the mean cross-entropy; the training set is reshuffled each epoch (seeded).
std::vector<EpochStats> train_classifier(const Classifier& model, const Dataset& train, const Dataset* test,
                                         const TrainOptions& options);

}  // namespace train
}  // namespace mamba_lrp
