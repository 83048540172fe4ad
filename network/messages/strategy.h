#pragma once
// Strategy messages: the training itself, produced and consumed by the roles of psgd/.
//   Parameter server (ssgd, asgd, ssp, local_sgd): Params server -> worker; Gradient (or
//   ModelDelta for local_sgd) worker -> server.
//   allreduce: RingChunk worker -> next worker in the ring; AllreduceReport worker -> server.
//   broadcast: PeerGradient worker -> every other worker, or with --codec ccdc CcdcCoded and
//   CcdcSlice worker -> other workers; AllreduceReport worker -> server.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/metrics.h"
#include "core/payload.h"

#ifndef PSGD_MESSAGE_TYPES
#error "include network/messages.h, of which this header is a part"
#endif

namespace psgd {

// server -> worker: the model to compute the next gradient on.
struct Params {
  std::int64_t iteration = 0;
  Payload values;
};

// worker -> server: the gradient of one batch, computed on Params of `iteration`.
struct Gradient {
  std::int64_t iteration = 0;
  Payload values;
  double loss = 0;
  std::int64_t samples = 0;
  PhaseTimes times;  // this iteration's compute/encode/decode and the wait before it
  // ‖g − D(C(g))‖ / ‖g‖ of this gradient, negative when not measured this iteration (see
  // SsgdWorker: every iteration when the codec knows it for free, else every 10th).
  double compression_error = -1;
  // The model's buffers after this batch (BatchNorm's running statistics, fp32, as
  // Learner::buffers()); empty when the model has none.
  std::vector<float> buffers;
};

// worker -> server (local_sgd): how far `local_steps` local optimiser steps moved the model from
// the Params of `iteration`: values = params(iteration) - local params, encoded like a gradient.
struct ModelDelta {
  std::int64_t iteration = 0;
  Payload values;
  double loss = 0;               // mean batch loss over the local steps
  std::int64_t samples = 0;      // samples of all local steps
  std::int64_t local_steps = 0;  // local optimiser steps taken
  PhaseTimes times;              // summed over the local steps
  std::vector<float> buffers;    // the model's buffers after the local steps (see Gradient)
};

// worker -> next worker in the ring (psgd/ring_allreduce.h): one chunk of one step of the ring
// allreduce of round `round`. On the wire the values are a std::vector<float> (a size tag, then
// the fp32 bytes). Neither side copies them: a chunk decoded from a frame a Connection read views
// that frame (`owner` keeps it alive), and a chunk the ring sends views the buffer the values
// live in, which the frame's gather write reads directly (RingAllreduce keeps such a buffer
// unchanged until its successor has received the chunk, or holds it with `owner`). `values` holds
// them instead when there is nothing to view (a frame decoded without an owner; tests).
struct RingChunk {
  std::int64_t round = 0;
  std::int32_t step = 0;   // 0 .. 2(n-1)-1: reduce-scatter, then all-gather
  std::int32_t chunk = 0;  // chunk within the step's segment
  std::vector<float> values;
  bool viewed = false;                 // the values are `view`, not `values`
  std::span<const std::uint8_t> view;  // fp32 bytes (not necessarily 4-byte aligned)
  std::shared_ptr<const void> owner;   // keeps `view` alive; null: the sender's own buffer

  // The values as bytes, wherever they live.
  std::span<const std::uint8_t> bytes() const {
    if (viewed) return view;
    return {reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(float)};
  }
  // Number of values.
  std::size_t size() const { return bytes().size() / sizeof(float); }
};

// worker -> server (allreduce): one worker's part of a finished iteration. At epoch ends every
// worker sends the hash of its parameters (they must be equal) and worker 0 the parameters.
struct AllreduceReport {
  std::int64_t iteration = 0;  // iterations done after this one
  double loss = 0;
  std::int64_t samples = 0;
  PhaseTimes times;              // wait_s: time spent in the allreduce
  std::uint64_t peer_bytes = 0;  // bytes this worker sent to peers in this iteration
  // The same traffic with each multicast (one message to several peers) counted once.
  std::uint64_t multicast_bytes = 0;
  std::uint64_t param_hash = 0;  // 0: not an epoch end
  std::vector<float> params;     // worker 0 at epoch ends; empty otherwise
  std::vector<float> buffers;    // every worker's buffers at epoch ends (see Gradient)
};

// server -> every remaining worker (allreduce, --allreduce_on_loss shrink, psgd/allreduce.h): a
// worker was lost; leave the ring of earlier generations and say where you are.
struct RingHalt {
  std::int64_t generation = 0;  // the ring to come (generations count up from 0)
};

// worker -> server: the answer to RingHalt. A worker's parameters and optimiser state after the
// iterations it has applied, which the server hands to members that are one iteration behind.
struct RingHalted {
  std::int64_t generation = 0;
  std::int64_t iteration = 0;  // iterations this worker has applied
  std::vector<float> params;
  std::vector<std::uint8_t> state;  // its optimiser's snapshot
};

// server -> every remaining worker: the new ring (its members in ring order) continues after
// `iteration`. A worker still at iteration - 1 gets the parameters and optimiser state of a
// member at `iteration` (empty for the others).
struct RingReform {
  std::int64_t generation = 0;
  std::int64_t iteration = 0;
  std::vector<std::int32_t> members;
  std::vector<float> params;
  std::vector<std::uint8_t> state;
};

// worker -> every other worker (broadcast): the encoded gradient of one batch.
struct PeerGradient {
  std::int32_t from = 0;
  std::int64_t iteration = 0;  // iterations done before this gradient's
  Payload values;
};

// worker -> the other r workers of an (r+1)-subset (--codec ccdc, psgd/coded/ccdc.h): the XOR of
// the fp32 bit patterns of the sender's pieces of the blocks those workers lack.
struct CcdcCoded {
  std::int32_t from = 0;
  std::int64_t iteration = 0;  // iterations done before this one
  std::int64_t group = 0;      // the (r+1)-subset, by its rank in lexicographic order
  std::vector<std::uint32_t> bits;
};

// worker -> every other worker (--codec ccdc): the sender's slice of the sum of all block
// gradients (the all-gather after the coded shuffle).
struct CcdcSlice {
  std::int32_t from = 0;
  std::int64_t iteration = 0;
  std::vector<float> values;
};

}  // namespace psgd
