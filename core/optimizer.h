#pragma once
// Optimisers on flat vectors, with torch.optim's semantics, and the flags that choose them.
//
// An Optimizer updates a flat parameter vector from a flat gradient of the same layout (every
// parameter of the model, core/learner.h). Where it runs is the strategy's business
// (psgd/strategy_table.h): the server for ssgd, asgd, ssp and the coded ssgd schemes, every worker
// for local_sgd (its local steps), allreduce and broadcast. The learning rate of each step comes
// from the job's schedule (core/lr_schedule.h) for the iteration the caller names, so a role
// passes its iteration and nothing else.
//
// The optimisers are listed once, in core/optimizer_table.h (name, the flags each reads, the
// factory): sgd (torch.optim.SGD: momentum, Nesterov, L2 weight decay; core/sgd.h), adam and adamw
// (torch.optim.Adam / AdamW, with amsgrad), adagrad (torch.optim.Adagrad) and rmsprop
// (torch.optim.RMSprop without momentum). Each step performs torch's operations in torch's
// order in fp32 (tests/nn/optimizer_torch_test.cc compares them with libtorch's optimisers).
//
// State. snapshot() returns the optimiser's whole state (step count and its buffers: momentum,
// first and second moments, ...) as bytes that restore() takes back on an optimiser built for the
// same job; a role puts them in its checkpoint (psgd/checkpoint.h).
//
// Threading: one thread at a time.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/lr_schedule.h"

namespace psgd {

// The optimiser a job asks for, as flags (core/fields.h). Which optimiser reads which flag is its
// table entry's to say (core/optimizer_table.h); a flag set for an optimiser that does not read it
// is refused.
struct OptimizerOptions {
  std::string optimizer = "sgd";
  double learn_rate = 0.05;
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = false;
  // server (the server's SGD) | worker (momentum correction before compression, as DGC; the
  // server's SGD then has none) | auto (the strategy's choice: psgd::momentum_at_worker).
  std::string momentum_at = "auto";
  double beta1 = 0.9;     // adam, adamw: decay of the first moment
  double beta2 = 0.999;   // adam, adamw: decay of the second moment
  double eps = 0;         // adam, adamw, rmsprop, adagrad: 0 means the optimiser's own default
  bool amsgrad = false;   // adam, adamw
  double alpha = 0.99;    // rmsprop: decay of the squared-gradient average
  bool centered = false;  // rmsprop
  double lr_decay = 0;    // adagrad
  double initial_accumulator_value = 0;  // adagrad

  // Ranges and spellings, then the optimiser's table entry: a flag it does not read is refused
  // naming the optimisers that do. Throws ConfigError naming the flag.
  void validate() const;
  // --eps in effect: the flag, or the optimiser's default (1e-10 for adagrad, 1e-8 otherwise).
  double effective_eps() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("optimizer", self.optimizer, optimizer_help());
    visit("learn_rate", self.learn_rate,
          "Learning rate of the optimiser (the server's for ssgd, asgd and ssp; each worker's for "
          "local_sgd, allreduce and broadcast); see --lr_schedule");
    visit("momentum", self.momentum,
          "sgd: momentum, in [0, 1) (torch.optim.SGD semantics; other optimisers: 0 or left at "
          "the default, which they do not read)");
    visit("weight_decay", self.weight_decay,
          "L2 weight decay added to the gradient (adamw: decoupled, the parameters shrink by "
          "lr * weight_decay each step; torch.optim.AdamW's default is 0.01, ours 0)");
    visit("nesterov", self.nesterov, "sgd: Nesterov momentum");
    visit("momentum_at", self.momentum_at,
          "sgd: where --momentum applies: server (its SGD) | worker (momentum correction before "
          "the codec, as DGC; server SGD without momentum) | auto (worker for asgd and ssp, "
          "whose server applies one stale gradient per update, and when error feedback is on, "
          "except local_sgd; server otherwise). Other optimisers keep their state where they "
          "run: auto or server");
    visit("beta1", self.beta1, "adam, adamw: decay of the first moment (torch's betas[0])");
    visit("beta2", self.beta2, "adam, adamw: decay of the second moment (torch's betas[1])");
    visit("eps", self.eps,
          "adam, adamw, rmsprop, adagrad: added to the denominator (0: the optimiser's default, "
          "1e-8; adagrad 1e-10)");
    visit("amsgrad", self.amsgrad, "adam, adamw: the AMSGrad variant (Reddi et al. 2018)");
    visit("alpha", self.alpha, "rmsprop: decay of the squared-gradient average");
    visit("centered", self.centered,
          "rmsprop: divide by the centred second moment (the gradient's variance)");
    visit("lr_decay", self.lr_decay, "adagrad: the rate is lr / (1 + (step - 1) * lr_decay)");
    visit("initial_accumulator_value", self.initial_accumulator_value,
          "adagrad: the starting value of the sum of squared gradients");
  }
  static std::string optimizer_help();
};

// What a role builds its optimiser from: the job's choice and hyperparameters, its schedule.
struct OptimizerSpec {
  std::string name = "sgd";
  LrSchedule schedule{0.05};
  double momentum = 0;  // sgd (0 where the workers apply it before the codec)
  double weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  bool amsgrad = false;
  double alpha = 0.99;
  bool centered = false;
  double lr_decay = 0;
  double initial_accumulator_value = 0;
};

class Optimizer {
 public:
  Optimizer(const OptimizerSpec& spec, std::size_t size) : spec_(spec), size_(size) {}
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One step on `grad` (left unchanged), with the schedule's rate for `iteration` times
  // `lr_scale` (the asynchronous servers' per-update weight for optimisers whose step does not
  // scale with the gradient, psgd/async_update.h). Throws Error when the sizes differ.
  void step(std::span<float> params, std::span<const float> grad, std::int64_t iteration,
            double lr_scale = 1.0);

  const OptimizerSpec& spec() const { return spec_; }
  std::int64_t steps() const { return steps_; }

  // The whole state as bytes, and back (a checkpoint). restore() throws ConfigError when the
  // bytes are not this optimiser's state for this model size.
  std::vector<std::uint8_t> snapshot() const;
  void restore(std::span<const std::uint8_t> bytes);

 protected:
  // params -= the step for `grad` at rate `lr`; steps() already counts this step.
  virtual void apply(std::span<float> params, std::span<const float> grad, double lr) = 0;
  // The optimiser's buffers, in a fixed order (momentum; moments; sums ...), each `size` values
  // or empty while unused.
  virtual std::vector<std::vector<float>*> state() = 0;

  OptimizerSpec spec_;
  std::size_t size_ = 0;
  std::int64_t steps_ = 0;
};

// Builds the optimiser `spec` names (core/optimizer_table.h). Throws ConfigError for an unknown
// name.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec, std::size_t size);

}  // namespace psgd
