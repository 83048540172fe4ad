#include "psgd/async_update.h"

#include <algorithm>

#include "core/error.h"
#include "core/optimizer_table.h"
#include "core/state_io.h"
#include "psgd/common.h"

namespace psgd {
namespace {

// SGD applies every gradient weighted 1/n, and its weight decay likewise; the scale-invariant
// optimisers take the weight through their rate instead and keep the decay as given.
OptimizerSpec per_update(OptimizerSpec spec, int node_count, bool weight_rate) {
  if (!weight_rate) {
    spec.weight_decay =
        static_cast<double>(static_cast<float>(spec.weight_decay) / static_cast<float>(node_count));
  }
  return spec;
}

}  // namespace

float staleness_weight(int node_count, std::int64_t staleness) {
  // Zhang et al. count the update itself: n workers in turn give every gradient staleness n there
  // and n - 1 here, hence staleness + 1; below n the weight stays 1/n.
  const std::int64_t zhang = std::max<std::int64_t>(staleness + 1, node_count);
  return 1.0f / static_cast<float>(zhang);
}

AsyncUpdate::AsyncUpdate(int node_count, const ServerContext& context, bool staleness_lr)
    : node_count_(node_count),
      ctx_(context),
      staleness_lr_(staleness_lr),
      weight_rate_(optimizer_entry(ctx_.optimizer.name).scale_invariant),
      optimiser_(make_optimizer(per_update(ctx_.optimizer, node_count, weight_rate_),
                                ctx_.parameters.size())),
      buffers_(node_count, ctx_.buffers),
      scratch_(ctx_.parameters.size(), 0.0f) {
  PSGD_CHECK(ctx_.clock != nullptr, "async server needs a clock");
  for (int w = 0; w < node_count_; ++w)
    uplink_.push_back(make_codec(ctx_.uplink));
}

std::vector<std::uint8_t> AsyncUpdate::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put<std::int64_t>(version_);
  w.put_bytes(optimiser_->snapshot());
  return out;
}

void AsyncUpdate::restore_state(std::span<const std::uint8_t> state) {
  StateReader r(state, "asynchronous update state");
  const auto version = r.get<std::int64_t>();
  const auto optimiser = r.get_bytes();
  r.expect_end();
  if (version < 0) r.fail("a negative version");
  optimiser_->restore(optimiser);
  version_ = version;
}

WorkerReport AsyncUpdate::apply(NodeId from, const Gradient& g, RoundStats& stats,
                                DelayCompensation* compensation) {
  const double arrival = ctx_.clock->now();
  PSGD_CHECK(g.iteration <= version_, "gradient of iteration {} from the future (version {})",
             g.iteration, version_);
  WorkerReport report = report_of(g);
  report.staleness = version_ - g.iteration;
  const float weight = staleness_lr_ ? staleness_weight(node_count_, report.staleness)
                                     : 1.0f / static_cast<float>(node_count_);

  Stopwatch sw(*ctx_.clock);
  std::fill(scratch_.begin(), scratch_.end(), 0.0f);
  const Codec& decoder = *uplink_[static_cast<std::size_t>(from)];
  // The compensation is not linear in the update: decode it unweighted, compensate, weight.
  const float gradient_weight = weight_rate_ ? 1.0f : weight;
  decoder.decode_add(g.values, scratch_, compensation == nullptr ? gradient_weight : 1.0f);
  const double decode_s = sw.seconds();
  sw.restart();
  if (compensation != nullptr) {  // counted as applying
    compensation->compensate(from, scratch_, ctx_.parameters);
    for (float& v : scratch_)
      v *= gradient_weight;
  }
  optimiser_->step(ctx_.parameters, scratch_, version_, weight_rate_ ? weight : 1.0);
  buffers_.receive(from, g.buffers);
  buffers_.update();
  const double apply_s = sw.seconds();
  ++version_;

  stats = RoundStats{.iteration = version_,
                     .gradients = 1,
                     .train_loss = g.loss,
                     .samples = g.samples,
                     .decode_s = decode_s,
                     .apply_s = apply_s};
  report.held_s = ctx_.clock->now() - arrival;
  return report;
}

}  // namespace psgd
