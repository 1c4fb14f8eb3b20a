// Temporary changes to a model for the length of one explanation: zeroed biases
// (--zero-bias) and the propagation mode and composite. Both restore on scope exit.
#pragma once
#include <torch/torch.h>

#include <vector>

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
  ScopedPropagation(Model& m, Propagation p, const Composite& c)
      : m_(m), old_(m->propagation()), old_composite_(m->composite()) {
    m_->set_propagation(p);
    m_->set_composite(c);
  }
  ~ScopedPropagation() {
    m_->set_propagation(old_);
    m_->set_composite(old_composite_);
  }
  ScopedPropagation(const ScopedPropagation&) = delete;
  ScopedPropagation& operator=(const ScopedPropagation&) = delete;

 private:
  Model& m_;
  Propagation old_;
  Composite old_composite_;
};

}  // namespace mamba_lrp
