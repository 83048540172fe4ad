#pragma once
// SGD on flat vectors with exactly torch.optim.SGD's semantics (momentum with dampening 0, optional
// Nesterov, L2 weight decay added to the gradient), so a parameter server applying it matches a
// single-process PyTorch run step for step.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace psgd {

// The optimiser a job asks for, as flags. Where it runs is the strategy's business
// (psgd/strategy_table.h): the server for ssgd, asgd and ssp, every worker for local_sgd,
// allreduce and broadcast; --momentum_at moves the momentum to the workers, before the codec.
struct OptimizerOptions {
  double learn_rate = 0.05;
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = false;
  // server (the server's SGD) | worker (momentum correction before compression, as DGC; the
  // server's SGD then has none) | auto (the strategy's choice: psgd::momentum_at_worker).
  std::string momentum_at = "auto";

  // Throws ConfigError naming the flag (a rate that is not a positive finite number, momentum
  // outside [0, 1), ...).
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("learn_rate", self.learn_rate,
          "SGD learning rate (of the server's optimiser, or each worker's for local_sgd, "
          "allreduce and broadcast)");
    visit("momentum", self.momentum, "SGD momentum, in [0, 1) (torch.optim.SGD semantics)");
    visit("weight_decay", self.weight_decay, "L2 weight decay");
    visit("nesterov", self.nesterov, "Nesterov momentum");
    visit("momentum_at", self.momentum_at,
          "Where --momentum applies: server (its SGD) | worker (momentum correction before the "
          "codec, as DGC; server SGD without momentum) | auto (worker for asgd and ssp, whose "
          "server applies one stale gradient per update, and when error feedback is on, except "
          "local_sgd; server otherwise)");
  }
};

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

}  // namespace psgd
