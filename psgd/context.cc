#include "psgd/context.h"

#include "core/error.h"

namespace psgd {

Schedule make_schedule(std::int64_t train_samples, int node_count, int batch_size, int epochs) {
  PSGD_CHECK(train_samples > 0 && node_count > 0 && batch_size > 0 && epochs > 0,
             "schedule needs positive sizes");
  const std::int64_t per_iteration = static_cast<std::int64_t>(node_count) * batch_size;
  return Schedule{.node_count = node_count,
                  .iterations_per_epoch = (train_samples + per_iteration - 1) / per_iteration,
                  .epochs = epochs};
}

}  // namespace psgd

namespace psgd {

std::vector<std::uint8_t> ServerRole::snapshot() const {
  throw ConfigError("this strategy cannot checkpoint (its table entry says checkpoints = false)");
}

void ServerRole::restore(std::span<const std::uint8_t>) {
  throw ConfigError("this strategy cannot resume from a checkpoint");
}

void WorkerRole::restore(std::span<const std::uint8_t> state) {
  if (!state.empty()) {
    throw ProtocolError(
        fmt::format("this worker keeps no state between iterations, but {} bytes of it were given",
                    state.size()));
  }
}

}  // namespace psgd
