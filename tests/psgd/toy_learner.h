#pragma once
// A torch-free Learner for driving strategies by hand: the loss of worker k is
// 0.5 * ||p - target_k||^2 scaled per step, so its gradient is known exactly.
#include <vector>

#include "core/learner.h"
#include "tests/manual_clock.h"

namespace psgd::testing {

class ToyLearner final : public Learner {
 public:
  ToyLearner(std::vector<float> target, std::size_t size)
      : target_(std::move(target)), params_(size, 0.0f), grads_(size, 0.0f) {}

  std::span<float> parameters() override { return params_; }
  std::span<const float> gradients() const override { return grads_; }
  StepStats compute_gradient() override {
    double loss = 0;
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      // Varies with the step so that trajectories with different step orders differ.
      grads_[i] = (params_[i] - target_[i]) * (1.0f + 0.1f * static_cast<float>(steps_ % 3));
      loss += 0.5 * grads_[i] * grads_[i];
    }
    // Like BatchNorm's running statistics, buffers move with every training step.
    for (std::size_t i = 0; i < buffer_values.size(); ++i)
      buffer_values[i] = target_[0] + static_cast<float>(steps_) + static_cast<float>(i);
    return {.loss = loss, .samples = 4};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return buffer_values; }

  // Empty: a model without buffers. Otherwise after step s, buffer i = target[0] + s + i.
  std::vector<float> buffer_values;

  // The gradient compute_gradient() would produce at `p` on step `step`.
  std::vector<float> gradient_at(const std::vector<float>& p, int step) const {
    std::vector<float> g(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      g[i] = (p[i] - target_[i]) * (1.0f + 0.1f * static_cast<float>(step % 3));
    }
    return g;
  }

 private:
  std::vector<float> target_;
  std::vector<float> params_;
  std::vector<float> grads_;
  int steps_ = 0;
};

// A clock the test moves by hand.
}  // namespace psgd::testing
