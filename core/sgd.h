#pragma once
// SGD on flat vectors with exactly torch.optim.SGD's semantics (momentum with dampening 0, optional
// Nesterov, L2 weight decay added to the gradient), so a parameter server applying it matches a
// single-process PyTorch run step for step. FlatSgd is the loop with a fixed rate (codecs and
// tests use it); SgdOptimizer is --optimizer sgd, the same loop behind the Optimizer interface
// (core/optimizer.h) with the job's schedule.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/optimizer.h"

namespace psgd {

struct SgdOptions {
  float learning_rate = 0.05f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

// --optimizer sgd with these fixed options (tests and tools that build a role by hand): the
// Optimizer interface then runs exactly FlatSgd's steps.
OptimizerSpec sgd_spec(const SgdOptions& options);

class FlatSgd {
 public:
  FlatSgd(SgdOptions options, std::size_t size);

  // params -= lr * direction(grad); grad is left unchanged.
  void step(std::span<float> params, std::span<const float> grad);
  // The rate of the next steps (a schedule, core/lr_schedule.h).
  void set_learning_rate(float lr) { options_.learning_rate = lr; }

  const SgdOptions& options() const { return options_; }
  std::span<const float> momentum_buffer() const { return buffer_; }
  // True before the first step (the momentum buffer then starts as the first direction).
  bool first_step() const { return first_step_; }
  // Puts the optimiser back in a state read from momentum_buffer() and first_step() (a
  // checkpoint). Throws Error when the buffer's size does not fit this optimiser.
  void restore(std::span<const float> buffer, bool first_step);
  // The same as bytes (core/state_io.h): the buffer and the first-step flag, for checkpoints of
  // the optimisers that workers run. restore_state() throws ProtocolError for state of another
  // size.
  std::vector<std::uint8_t> state() const;
  void restore_state(std::span<const std::uint8_t> state);

 private:
  SgdOptions options_;
  std::vector<float> buffer_;
  bool first_step_ = true;
};

// --optimizer sgd (core/optimizer_table.h): FlatSgd's arithmetic with the schedule's rate.
class SgdOptimizer final : public Optimizer {
 public:
  SgdOptimizer(const OptimizerSpec& spec, std::size_t size);

 protected:
  void apply(std::span<float> params, std::span<const float> grad, double lr) override;
  std::vector<std::vector<float>*> state() override { return {&buffer_}; }

 private:
  std::vector<float> buffer_;  // momentum; empty without
};

}  // namespace psgd
