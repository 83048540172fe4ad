#pragma once
// SGD on flat vectors with exactly torch.optim.SGD's semantics (momentum with dampening 0, optional
// Nesterov, L2 weight decay added to the gradient), so a parameter server applying it matches a
// single-process PyTorch run step for step.
#include <cstddef>
#include <span>
#include <vector>

namespace psgd {

struct SgdOptions {
  float learning_rate = 0.05f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

class FlatSgd {
 public:
  FlatSgd(SgdOptions options, std::size_t size);

  // params -= lr * direction(grad); grad is left unchanged.
  void step(std::span<float> params, std::span<const float> grad);

  const SgdOptions& options() const { return options_; }
  std::span<const float> momentum_buffer() const { return buffer_; }
  // True before the first step (the momentum buffer then starts as the first direction).
  bool first_step() const { return first_step_; }
  // Puts the optimiser back in a state read from momentum_buffer() and first_step() (a
  // checkpoint). Throws Error when the buffer's size does not fit this optimiser.
  void restore(std::span<const float> buffer, bool first_step);

 private:
  SgdOptions options_;
  std::vector<float> buffer_;
  bool first_step_ = true;
};

}  // namespace psgd
