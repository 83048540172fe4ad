#pragma once
// What the asynchronous strategies (asgd, ssp) share: applying one worker's gradient to the
// global model the moment it arrives, and knowing how stale it was.
//
// Weighting. Each gradient is applied with weight 1/n (n = node_count) and the weight decay with
// 1/n per update, so that n updates of one batch each move the model as far as one ssgd step on
// the mean of n batches: --learn_rate means the same per-sample step size in ssgd, asgd and ssp,
// and ssp with staleness 0 reproduces ssgd's trajectory (exactly without momentum; with momentum
// the buffer decays once per update instead of once per round). With staleness_lr the weight is
// further divided by max(1, staleness) (Zhang et al. 2016, "Staleness-aware async-SGD"); scaling
// the gradient rather than the learning rate also scales its whole contribution to the momentum
// buffer.
#include <memory>
#include <vector>

#include "core/sgd.h"
#include "psgd/context.h"

namespace psgd {

class AsyncUpdate {
 public:
  AsyncUpdate(int node_count, const ServerContext& context, bool staleness_lr);

  // Decodes `g` from worker `from`, applies it and advances the version. Returns the worker's
  // report with its staleness (version before this update minus g.iteration) and held_s from
  // `arrival` to now; `stats` receives the round (one gradient).
  WorkerReport apply(NodeId from, const Gradient& g, RoundStats& stats);

  // Updates applied so far: the iteration of the current parameters.
  std::int64_t version() const { return version_; }

 private:
  int node_count_;
  ServerContext ctx_;
  bool staleness_lr_;
  FlatSgd optimiser_;
  std::vector<std::unique_ptr<Codec>> uplink_;  // one decoder per worker
  std::vector<float> scratch_;
  std::int64_t version_ = 0;
};

}  // namespace psgd
