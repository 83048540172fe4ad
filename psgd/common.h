#pragma once
// Small pieces the strategy roles share, so that each role file holds only what makes its
// strategy different: checking an incoming worker message, building a parameter broadcast, and
// the WorkerReport a gradient turns into.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "codecs/codec.h"
#include "codecs/factory.h"
#include "core/clock.h"
#include "core/learner.h"
#include "core/metrics.h"
#include "psgd/strategy.h"

namespace psgd {

// The Gradient in `message`, after checking that it is one and that `from` is a worker of a job
// with `node_count` workers. Throws ProtocolError naming `strategy` otherwise.
const Gradient& expect_gradient(const char* strategy, NodeId from, int node_count,
                                const Message& message);

// The payload buffer a worker encodes into round after round (Codec::encode_into), so that a large
// gradient's bytes are not allocated and page-faulted afresh every iteration. The payload travels
// inside the message the worker sends; take() moves it back out of the last message kept once no
// one else holds that message any more (the transport has written it), and otherwise hands out an
// empty payload. The driver and the roles run on one thread, so the ownership test is exact.
class PayloadRecycler {
 public:
  Payload take();
  // The message to send, remembered so that take() can recycle its payload.
  std::shared_ptr<const Message> keep(Message message);

 private:
  std::shared_ptr<Message> last_;
};

// A Params message of `iteration` holding `values` encoded with `codec`.
std::shared_ptr<const Message> params_message(std::int64_t iteration, Codec& codec,
                                              std::span<const float> values);
// The same, encoded into the buffer of the last message `replies` kept once nothing else holds
// it (no model-sized allocation per round; otherwise a fresh buffer), and kept for the next one.
std::shared_ptr<const Message> params_message(std::int64_t iteration, Codec& codec,
                                              std::span<const float> values,
                                              PayloadRecycler& replies);

// Sends `message` to every one of `node_count` workers (one shared message, encoded once).
void broadcast(const std::shared_ptr<const Message>& message, int node_count, Outbox& out);

// A worker receiving the Params in `message`: checks that it is one and newer than
// `last_iteration`, records the wait since `waiting_since` (< 0: none) and the decode time in
// `times`, decodes the values into the learner's parameters, and returns the new iteration.
std::int64_t install_params(const Message& message, std::int64_t last_iteration,
                            double waiting_since, const Codec& downlink, Learner& learner,
                            const Clock& clock, PhaseTimes& times);

// A peer-to-peer worker (allreduce, broadcast) receiving the one Params that starts its run:
// refuses a second one or one outside the schedule's `total_iterations`, decodes the values into
// the learner's parameters, sets `started` and returns the iteration (0, or the checkpoint's on a
// resumed run).
std::int64_t start_params(const char* strategy, const Params& p, bool& started,
                          std::int64_t total_iterations, const CodecSpec& downlink,
                          Learner& learner);

// What the server records of a gradient as it arrives (held_s and staleness are filled later).
WorkerReport report_of(const Gradient& gradient);

// The mean of `parts` (each as long as `scratch`): summed in order (deterministic whatever the
// arrival order), then scaled once by 1/count. With one part that part itself is returned (no
// copy); otherwise the result is written to `scratch` and returned.
std::span<const float> mean_of(std::span<const std::span<const float>> parts,
                               std::span<float> scratch);

// mean_of's two steps, for a sum that grows as the parts arrive: add_to_sum(sum, part, first) for
// each part in order (the first is copied, each later one added), then scale(sum, 1 / count).
// mean_of applies the same two block by block: the same bits.
void add_to_sum(std::span<float> sum, std::span<const float> part, bool first);
void scale(std::span<float> values, float factor);

// The mean of the used slots: summed in slot order (deterministic whatever the arrival order),
// then scaled once by 1/count. With one used slot that slot itself is returned (no copy);
// otherwise the result is written to `scratch` and returned.
std::span<const float> mean_of_slots(std::span<const std::vector<float>> slots,
                                     const std::vector<bool>& use, std::span<float> scratch);

// The model's buffers (BatchNorm's running statistics, Learner::buffers()) as the server keeps
// them: the mean of the latest buffers each worker reported, summed in worker order
// (deterministic whatever the arrival order). Buffers are not trained by gradients: each worker's
// forward passes update its own, and the server's model, which never trains, evaluates and saves
// with their mean. The running statistics are exponential averages, linear in each batch's
// statistics, so the mean of the workers' running means is the running mean of their batches'
// means: what one process would track on the global batch (for the variance, without the
// spread between workers' batch means). Workers keep their own buffers: training in train mode
// never reads them. Nothing happens for a model without buffers (an empty target).
class WorkerBuffers {
 public:
  WorkerBuffers(int node_count, std::span<float> target);
  // The buffers `from` holds now. ProtocolError when they are neither empty nor the model's size.
  void receive(NodeId from, std::span<const float> values);
  // target = the mean over the workers that have reported (unchanged while none has).
  void update();
  // Checkpoints: every worker's latest, and back (ConfigError when they do not fit).
  std::vector<std::vector<float>> snapshot() const;
  void restore(std::vector<std::vector<float>> latest);

 private:
  std::span<float> target_;
  std::vector<std::vector<float>> latest_;  // per worker; empty until it has reported
  std::vector<float> sum_;
};

// scale · Σ of the used slots, summed in slot order (deterministic whatever the arrival order)
// into `scratch`, which is returned.
std::span<const float> scaled_sum_of_slots(std::span<const std::vector<float>> slots,
                                           const std::vector<bool>& use, float scale,
                                           std::span<float> scratch);

}  // namespace psgd
