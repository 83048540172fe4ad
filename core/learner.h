#pragma once
// The one bridge between the algorithms and the neural-net engine (DESIGN.md "Layers").
//
// Strategies and codecs work on flat float vectors; a Learner owns a model whose parameters and
// gradients ARE flat vectors (the model's tensors are views into them), so nothing is copied
// between the engine and the wire. nn::Trainer is the libtorch implementation; tests use small
// hand-written learners (a quadratic, say) that need no torch.
//
// Threading: a Learner is used by one thread at a time.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace psgd {

struct StepStats {
  double loss = 0.0;         // mean loss over the batch
  std::int64_t samples = 0;  // batch size actually used
};

struct EvalStats {
  double loss = 0.0;
  double accuracy = 0.0;  // fraction in [0, 1]; NaN where it does not apply (reconstruction)
  std::int64_t samples = 0;
  // The same two figures on the validation split (--validation_split), when there is one.
  std::optional<double> validation_loss;
  std::optional<double> validation_accuracy;
  // Regression targets (--target regression): root mean squared error over every target value,
  // and R^2 = 1 - SSE / SST (SST around each target column's mean on the evaluated set); none
  // otherwise.
  std::optional<double> rmse;
  std::optional<double> r2;
  std::optional<double> validation_rmse;
  std::optional<double> validation_r2;
};

class Learner {
 public:
  virtual ~Learner() = default;

  // The model's parameters, flat and contiguous; writing them changes the model.
  virtual std::span<float> parameters() = 0;

  // The gradient of the last compute_gradient() call, same layout as parameters().
  virtual std::span<const float> gradients() const = 0;

  // Forward and backward on the next batch of this learner's own training data.
  virtual StepStats compute_gradient() = 0;

  // Loss and accuracy of the current parameters on the held-out test set (and on the validation
  // split, if the learner has one).
  virtual EvalStats evaluate() = 0;

  // The model's buffers that are not parameters (BatchNorm's running statistics), flat; empty
  // for a model without any. They are not trained by gradients: a forward pass in training mode
  // updates them. Strategies carry them to the server, which evaluates with their mean. Pure, so
  // that a decorator cannot forget to pass them on.
  virtual std::span<float> buffers() = 0;

  // Staged backward (allreduce --overlap, psgd/allreduce_overlap.h): the gradient computed in
  // steps, so that a worker can send the part that is final while the rest is being computed.
  //
  // backward_cuts(): the offsets into gradients() where the backward pass can pause, in
  // decreasing order, each the start of a layer's parameters (backward makes the last layers'
  // gradients final first). Empty: it cannot pause (the default; a TorchScript model).
  virtual std::vector<std::size_t> backward_cuts() const { return {}; }
  // begin_gradient(cuts): what compute_gradient() does up to the backward pass (the next batch,
  // the forward pass), with the backward pass to pause at `cuts` (a subset of backward_cuts(),
  // decreasing). continue_backward() then runs the backward pass to the next cut and returns the
  // offset from which on every gradient value is final: the next cut, and 0 once the gradient is
  // complete (the step is then over). The gradient and the stats are those of
  // compute_gradient(), bit for bit. The default computes everything in begin_gradient().
  virtual StepStats begin_gradient(std::span<const std::size_t> cuts) {
    (void)cuts;
    return compute_gradient();
  }
  virtual std::size_t continue_backward() { return 0; }
};

}  // namespace psgd
