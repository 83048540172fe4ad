#pragma once
// nn::Trainer: the libtorch implementation of psgd::Learner (core/learner.h).
//
// Flat parameters. All model parameters live in ONE contiguous float tensor and all gradients in
// another: every module parameter is a view into the flat parameter tensor and its .grad() a view
// into the flat gradient tensor, so backward accumulates straight into the flat gradient and a
// write through parameters() is a write into the model. Nothing is copied between the engine and
// codecs or strategies. Layout: module.parameters() order, each tensor row-major.
//
// Data. The worker's training samples (train_indices into data->train) are gathered once, at
// construction, into contiguous tensors. compute_gradient() takes full batches of batch_size
// along a permutation of the local samples that is reshuffled for every local pass with
// Rng(derive_seed(...)) of (seed, batch_stream, pass); a pass that ends mid-batch continues into
// the next pass's permutation. With fewer local samples than batch_size every batch is the whole
// set.
//
// Seeds. The initial parameters depend only on `seed` (torch::manual_seed right before the model
// is built), so workers of one job pass the same seed to start from the same model, and a
// different `batch_stream` (their rank, say) to draw different batch orders.
//
// Buffers. A model's fp32 buffers (BatchNorm's running mean and variance) are views into one flat
// buffer tensor, buffers(), in named_buffers() order; other buffers (BatchNorm's int64
// num_batches_tracked) stay where they are. A forward pass in training mode updates them.
//
// TorchScript (--model script:FILE). The module is loaded from the file's bytes; its trainable
// parameters (requires_grad) become the flat parameters. At construction one forward pass on two
// samples checks that the module takes the data's N x C x H x W batches and returns N x outputs
// (classes, or C*H*W for reconstruction); otherwise ConfigError says which, in one line.
//
// Randomness in forward passes (Dropout) draws from torch's default CPU generator seeded afresh for
// each training batch from (seed, batch_stream, the batch's number in this trainer's batch order),
// under a process-wide lock, and restored afterwards. So a worker's dropout masks do not depend on
// what other trainers in the same process (the simulator's workers) drew, and a batch's masks are
// the same whether the batches before it were computed or skipped (skip_batches: a resumed
// worker's masks are the uninterrupted run's).
//
// Device. Only CPU is supported for now: "auto" and "cpu" run on the CPU; "cuda" throws
// ConfigError (not available, or not yet supported by the flat-parameter path, whose spans
// must point to host memory). "auto" therefore uses the CPU even on a CUDA machine.
//
// Threading: one thread at a time, like every Learner. The torch thread count is per process,
// see nn/threads.h.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/learner.h"
#include "nn/dataset.h"

namespace psgd::nn {

struct TrainerOptions {
  // A built-in model (nn/models_impl.h) or script:FILE, a TorchScript module.
  std::string model = "mlp";
  // xy: classify (cross-entropy); xx: reconstruct the input (MSE); regression: the data's float
  // targets (MSE; evaluate() adds RMSE and R^2)
  std::string target = "xy";
  // --model script:FILE: the file's bytes (the server ships them with the job); null: read FILE.
  std::shared_ptr<const std::string> script;
  int batch_size = 128;
  std::uint64_t seed = 1;          // initial parameters and batch order
  std::string device = "auto";     // "auto", "cpu" or "cuda"
  std::uint64_t batch_stream = 0;  // mixed into the batch-order seed only
  // Per-block batch streams (gradient coding, psgd/coded/gc.h). When not empty, train_indices is
  // the concatenation of these blocks, block_sizes[i] samples of block block_ids[i] each, and
  // successive compute_gradient() calls take their batch from the worker's blocks in turn
  // (0, 1, ..., k−1, 0, ...), each block with a batch order seeded by (seed, block id) only, so
  // every worker holding a block draws the same batches of it. batch_stream is then unused.
  std::vector<std::int64_t> block_ids;
  std::vector<std::int64_t> block_sizes;
};

class Trainer final : public Learner {
 public:
  // train_indices are this worker's samples of data->train (may be empty for a trainer that only
  // evaluates). Throws ConfigError for an unknown model or device, a batch size < 1 or an index
  // outside the training set.
  Trainer(TrainerOptions options, std::shared_ptr<const DataSplit> data,
          std::vector<std::int64_t> train_indices);
  ~Trainer() override;
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  std::span<float> parameters() override;
  std::span<const float> gradients() const override;
  // Throws psgd::Error when the trainer has no training samples.
  StepStats compute_gradient() override;
  // Staged backward (core/learner.h): built-in models pause before each layer with parameters
  // (their children in the Sequential); a TorchScript model computes in one piece.
  std::vector<std::size_t> backward_cuts() const override;
  StepStats begin_gradient(std::span<const std::size_t> cuts) override;
  std::size_t continue_backward() override;
  // Mean loss and accuracy on data->test in chunks of 1000 (zeros if the test set is empty), and
  // on data->validation when it is not empty. The loss is the training loss: cross-entropy for
  // target xy, mean squared error per value for xx and regression (accuracy is then NaN;
  // regression adds RMSE and R^2).
  EvalStats evaluate() override;
  // The fp32 buffers, flat (empty when the model has none).
  std::span<float> buffers() override;
  // Advances the batch order past `count` batches without computing them, exactly as `count`
  // compute_gradient() calls would (a worker resuming a checkpoint, or taking over a lost
  // worker's slot, continues that worker's batch order and Dropout masks). Cheap: no forward or
  // backward.
  void skip_batches(std::int64_t count);

  std::size_t num_parameters() const;
  std::size_t num_buffers() const;
  // The number of elements of each parameter tensor, in the flat layout's order (per-tensor
  // codecs, codecs/topk.h).
  std::vector<std::uint64_t> tensor_sizes() const;
  // The first dimension of each parameter tensor, same order (1 for a scalar): with
  // tensor_sizes(), each tensor as a matrix (PowerSGD, psgd/powersgd.h).
  std::vector<std::uint64_t> tensor_rows() const;
  std::size_t num_train_samples() const;
  std::string describe() const;  // e.g. "mlp: 203,530 parameters"

  // Writes dir/model<tag>.pt and dir/state_dict<tag>.pt ("model_best.pt", "state_dict_best.pt"
  // for tag "_best"), each whole or not at all (a temporary file renamed). model.pt is the
  // libtorch archive of a built-in module (torch::load-able from C++), or the TorchScript module
  // itself (torch.jit.load in Python); state_dict.pt a pickled dict of parameter and buffer
  // tensors that Python's torch.load reads as the state dict of the equivalent nn.Sequential (or
  // of the scripted module). Creates dir if needed; IoError on failure.
  void save(const std::string& dir, const std::string& tag = "") const;
  // Reads dir/model<tag>.pt (as written by save(), for the same model and data shape) into this
  // trainer's parameters and buffers. IoError when the file is missing or unreadable,
  // ConfigError when it holds a different model.
  void load(const std::string& dir, const std::string& tag = "");

 private:
  friend struct TrainerAccess;  // nn/trainer_impl.h: the torch module, for nn/ and its tests
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace psgd::nn
