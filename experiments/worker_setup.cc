#include "experiments/worker_setup.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/seeds.h"
#include "core/state_io.h"
#include "nn/trainer.h"
#include "psgd/factory.h"

namespace psgd {

WorkerParts::WorkerParts(const JobSpec& spec, const Schedule& schedule, const WorkerSetup& setup,
                         std::shared_ptr<const nn::DataSplit> data, std::vector<std::int64_t> rows,
                         const WorkerEnv& env) {
  const auto w = static_cast<std::uint64_t>(setup.worker);
  const std::size_t held = rows.size();
  trainer_ = std::make_unique<nn::Trainer>(nn::TrainerOptions{.model = spec.model,
                                                              .target = spec.target,
                                                              .script = setup.script,
                                                              .batch_size = spec.batch_size,
                                                              .seed = spec.seed,
                                                              .device = spec.device,
                                                              .batch_stream = seeds::batch_order(w),
                                                              .block_ids = setup.block_ids,
                                                              .block_sizes = setup.block_sizes},
                                           std::move(data), std::move(rows));
  if (setup.start_batch < 0 || setup.start_batch > (std::int64_t{1} << 40)) {
    throw ProtocolError(fmt::format("the job's start batch {} is out of range", setup.start_batch));
  }
  trainer_->skip_batches(setup.start_batch);
  Learner* learner = trainer_.get();
  const DelayModel delay = DelayModel::parse(spec.delay);
  if (env.slowdown > 1.0 || !delay.none()) {
    straggler_ = std::make_unique<StragglerLearner>(
        *trainer_,
        StragglerOptions{.slowdown = env.slowdown,
                         .delay = delay,
                         .seed = seeds::of(spec.seed, seeds::worker_delay(w))},
        *env.clock, env.pause, env.work);
    learner = straggler_.get();
  }
  if (env.wrap) learner = env.wrap(learner);
  if (env.trace) {
    trace_ =
        std::make_unique<TraceLearner>(*learner, *env.clock, static_cast<std::int64_t>(held),
                                       setup.start_batch, spec.batch_size, env.traffic, env.trace);
    learner = trace_.get();
  }
  std::vector<MatrixShape> tensors;
  const auto sizes = trainer_->tensor_sizes();
  const auto leading = trainer_->tensor_rows();
  for (std::size_t i = 0; i < sizes.size(); ++i)
    tensors.push_back({.rows = leading[i], .cols = leading[i] ? sizes[i] / leading[i] : 0});
  role_ = make_worker_role(
      spec, schedule,
      WorkerContext{.learner = learner,
                    .uplink = uplink_codec_spec(spec, w, schedule.iterations_per_epoch,
                                                trainer_->tensor_sizes()),
                    .downlink = downlink_codec_spec(spec),
                    .clock = env.clock,
                    .id = setup.worker,
                    .collective = env.collective,
                    .tensors = std::move(tensors)});
}

WorkerParts::~WorkerParts() = default;

std::vector<std::uint8_t> WorkerParts::snapshot() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put_bytes(role_->snapshot());
  w.put_floats(trainer_->buffers());
  return out;
}

void WorkerParts::restore(std::span<const std::uint8_t> state) {
  if (state.empty()) {
    role_->restore(state);
    return;
  }
  StateReader r(state, "worker state");
  const auto role = r.get_bytes();
  const auto buffers = r.get_floats(trainer_->num_buffers());
  r.expect_end();
  role_->restore(role);
  std::copy(buffers.begin(), buffers.end(), trainer_->buffers().begin());
}

}  // namespace psgd
