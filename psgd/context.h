#pragma once
// What a role is given by its driver: the model it works on, its codecs and its clock. Plain
// structs (STYLE.md §3) so that tests can build roles around a toy Learner and a fake clock.
#include <cstdint>
#include <span>
#include <vector>

#include "codecs/factory.h"
#include "core/clock.h"
#include "core/learner.h"
#include "core/optimizer.h"
#include "psgd/strategy.h"

namespace psgd {

struct ServerContext {
  std::span<float> parameters;  // the global model, updated in place
  std::span<float> buffers;     // its buffers (WorkerBuffers, psgd/common.h); may be empty
  OptimizerSpec optimizer;      // the server's optimiser (strategies whose server applies updates)
  CodecSpec uplink;             // how workers encode gradients
  CodecSpec downlink;           // how the server encodes parameters
  const Clock* clock = nullptr;
  ServerObserver* observer = nullptr;  // may be null
};

class Collective;

// A tensor of the model viewed as a matrix: its first dimension by the rest (a 1-D tensor of n
// values is n x 1), as PyTorch's powerSGD_hook views it.
struct MatrixShape {
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
};

struct WorkerContext {
  Learner* learner = nullptr;
  CodecSpec uplink;
  CodecSpec downlink;
  const Clock* clock = nullptr;
  NodeId id = 0;                     // this worker (peer-to-peer strategies address each other)
  Collective* collective = nullptr;  // allreduce: a blocking engine; null: the ring over messages
  // The model's tensors in flat order (--codec powersgd); empty: not known (a test's learner).
  std::vector<MatrixShape> tensors;
};

// The schedule every strategy shares: an epoch is one pass over the training set by all workers
// together, ceil(train_samples / (node_count * batch_size)) iterations (as DistributedSampler).
struct Schedule {
  int node_count = 1;
  std::int64_t iterations_per_epoch = 1;
  int epochs = 1;
  std::int64_t total_iterations() const { return iterations_per_epoch * epochs; }
  // After `done` iterations, an epoch (or the run, whose last epoch may be cut short) has ended.
  bool epoch_end(std::int64_t done) const {
    return done % iterations_per_epoch == 0 || done == total_iterations();
  }
};

Schedule make_schedule(std::int64_t train_samples, int node_count, int batch_size, int epochs);

}  // namespace psgd
