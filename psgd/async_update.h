#pragma once
// What the asynchronous strategies (asgd, ssp) share: applying one worker's gradient to the
// global model the moment it arrives, and knowing how stale it was.
//
// Weighting. Each gradient is applied with weight 1/n (n = node_count) and the weight decay with
// 1/n per update, so that n updates of one batch each move the model as far as one ssgd step on
// the mean of n batches: --learn_rate means the same per-sample step size in ssgd, asgd and ssp.
// With staleness_lr the weight is 1 / max(n, staleness + 1) (staleness_weight below): Zhang et
// al. 2016 ("Staleness-aware async-SGD for distributed deep learning") divide the learning rate by
// the staleness counted with the update itself, which is n for n workers taking turns, so that
// the 1/n above already is their rate for a gradient of the usual staleness n - 1; only a gradient
// staler than that (a slow worker's, one held up by the host's scheduler) is damped further, in
// proportion, and none is weighted above 1/n. Dividing 1/n by the staleness once more (this
// option's first version) counts the n workers twice and shrinks every step ~n-fold: 4 workers,
// MLP, 2 epochs, one worker 4x slower, over TCP, seeds 1-6: final test accuracy median 0.823
// (0.802-0.827) against 0.833 (0.820-0.840) without the option. The capped rule does not make
// asgd better on average either (bench/README.md): the slow worker is not why asgd sometimes
// ends below ssgd; the staleness of every worker is.
//
// Other optimisers (--optimizer adam, adamw, adagrad, rmsprop). Their step does not grow with the
// gradient's scale (Adam's m / sqrt(v)), so weighting the gradient 1/n would leave every update a
// full step: for them the weight multiplies the update's learning rate instead (lr/n, or the
// staleness weight times lr), and the weight decay stays as given. The server keeps ONE set of the
// optimiser's state (Adam's moments, Adagrad's sums), updated by every gradient as it arrives,
// whichever worker sent it and however stale: Parallel-SGD's adam_gradiff setting. Its moments
// therefore average over n times more, staler updates per epoch than ssgd's, and the bias
// correction counts server updates. Delay compensation corrects the gradient before it enters
// the moments.
//
// Momentum. By default (--momentum_at auto) the asynchronous strategies keep --momentum on the
// workers (codecs/momentum.h): each worker's buffer decays once per step of that worker, which is
// once per round as ssgd's buffer does, and the server's SGD here has none. Then ssp with
// staleness 0 reproduces ssgd's trajectory exactly, with momentum too (momentum is linear).
// Momentum on this server's SGD (--momentum_at server) decays once per update and re-applies
// every stale gradient for ~1/(1 - momentum) updates: asynchrony already acts as momentum
// (Mitliagkas et al. 2016, "Asynchrony begets momentum"), and the two add up. Measured (4 workers,
// MLP, Fashion-MNIST, 2 epochs, lr 0.05, momentum 0.9, simulated): without momentum asgd learns as
// fast as ssgd, with server momentum its final train loss is 0.63-0.68 against ssgd's 0.47, with
// worker momentum 0.51-0.55.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/common.h"
#include "psgd/context.h"
#include "psgd/delay_compensation.h"

namespace psgd {

// The weight of a gradient of this staleness with --staleness_lr: 1 / max(n, staleness + 1).
float staleness_weight(int node_count, std::int64_t staleness);

class AsyncUpdate {
 public:
  AsyncUpdate(int node_count, const ServerContext& context, bool staleness_lr);

  // Decodes `g` from worker `from`, applies it and advances the version. Returns the worker's
  // report with its staleness (version before this update minus g.iteration) and held_s from
  // `arrival` to now; `stats` receives the round (one gradient). With `compensation` the decoded
  // update is delay-compensated (psgd/delay_compensation.h) before it is weighted and applied;
  // without, the path is the plain one, bit for bit.
  WorkerReport apply(NodeId from, const Gradient& g, RoundStats& stats,
                     DelayCompensation* compensation = nullptr);

  // Updates applied so far: the iteration of the current parameters.
  std::int64_t version() const { return version_; }

  // Checkpoints: the version and the optimiser's state (core/state_io.h). restore_state() throws
  // ProtocolError for state of another model.
  std::vector<std::uint8_t> state() const;
  void restore_state(std::span<const std::uint8_t> state);

 private:
  int node_count_;
  ServerContext ctx_;
  bool staleness_lr_;
  bool weight_rate_;  // the optimiser is scale-invariant: weight its rate, not the gradient
  std::unique_ptr<Optimizer> optimiser_;
  WorkerBuffers buffers_;  // the model's buffers: the mean of the workers' latest
  std::vector<std::unique_ptr<Codec>> uplink_;  // one decoder per worker
  std::vector<float> scratch_;
  std::int64_t version_ = 0;
};

}  // namespace psgd
