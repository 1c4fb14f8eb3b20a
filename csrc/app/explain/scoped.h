// Temporary changes to a model for the length of one explanation: zeroed biases
// (--zero-bias) and the propagation mode and composite. Both restore on scope exit.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "csrc/io/errors.h"
#include "rules/propagation.h"

namespace mamba_lrp {

// Zeroes the given tensors and puts their values back when it goes out of scope.
class ScopedZero {
 public:
  explicit ScopedZero(std::vector<at::Tensor> tensors) : tensors_(std::move(tensors)) {
    torch::NoGradGuard g;
    for (auto& t : tensors_) {
      saved_.push_back(t.clone());
      t.zero_();
    }
  }
  ~ScopedZero() {
    torch::NoGradGuard g;
    for (size_t i = 0; i < tensors_.size(); ++i) tensors_[i].copy_(saved_[i]);
  }
  ScopedZero(const ScopedZero&) = delete;
  ScopedZero& operator=(const ScopedZero&) = delete;

 private:
  std::vector<at::Tensor> tensors_, saved_;
};

// Sets a model's propagation mode and composite; restores both afterwards. Model is a
// module holder with propagation(), composite(), set_propagation() and set_composite().
template <typename Model>
class ScopedPropagation {
 public:
  ScopedPropagation(Model& m, rules::Propagation p, const rules::Composite& c, bool recompute = false)
      : m_(m), old_(m->propagation()), old_composite_(m->composite()), old_recompute_(m->recompute()) {
    m_->set_propagation(p);
    m_->set_composite(c);
    m_->set_recompute(recompute);
  }
  ~ScopedPropagation() {
    m_->set_propagation(old_);
    m_->set_composite(old_composite_);
    m_->set_recompute(old_recompute_);
  }
  ScopedPropagation(const ScopedPropagation&) = delete;
  ScopedPropagation& operator=(const ScopedPropagation&) = delete;

 private:
  Model& m_;
  rules::Propagation old_;
  rules::Composite old_composite_;
  bool old_recompute_;
};

// The `recompute` option of the explain APIs: "on", "off", or "auto" = on when the SSM
// branches would keep more than limit_bytes per batch row for the backward without it
// (kept_tensors tensors of length x inner per branch: 7 for a Mamba-1 / Vision Mamba branch
// with a 2 GiB limit; Mamba-2's explanation node keeps 3.2, with a 1 GiB limit, so that a
// 130M-sized model at 4096 tokens stays under 2.5 GB in all). Throws io::InputError for other values.
inline bool recompute_ssm_branches(const std::string& option, int64_t length, int64_t inner, int64_t branches,
                                   at::ScalarType dtype, double kept_tensors = 7.0,
                                   double limit_bytes = 2.0 * (1 << 30)) {
  if (option == "on") return true;
  if (option == "off") return false;
  if (option != "auto") throw io::InputError("recompute must be auto, on or off, got '" + option + "'");
  const double kept = kept_tensors * static_cast<double>(length) * inner * branches * at::elementSize(dtype);
  return kept > limit_bytes;
}

}  // namespace mamba_lrp
