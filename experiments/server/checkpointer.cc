#include "experiments/server/checkpointer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "experiments/format.h"
#include "experiments/recorder.h"
#include "psgd/factory.h"

namespace psgd {

Checkpointer::Checkpointer(const JobSpec& spec, const Schedule& schedule,
                           std::size_t num_parameters)
    : spec_(spec), schedule_(schedule), num_parameters_(num_parameters) {}

CheckpointHeader Checkpointer::header() const {
  return CheckpointHeader{.model = spec_.model,
                          .num_parameters = num_parameters_,
                          .config_hash = job_config_hash(spec_),
                          .strategy = spec_.psgd};
}

Checkpoint Checkpointer::load(const std::string& run_dir) const {
  const std::string path = run_dir + "/" + kCheckpointFile;
  try {
    Checkpoint c = decode_checkpoint(read_checkpoint_file(path));
    check_matches(c, header());
    if (c.worker_batches.size() != static_cast<std::size_t>(spec_.node_count)) {
      throw CheckpointError(fmt::format("checkpoint has {} workers, the job {}",
                                        c.worker_batches.size(), spec_.node_count));
    }
    // The strategy must accept its state before any worker is asked to join.
    std::vector<float> scratch(c.parameters);
    SteadyClock clock;
    make_server_role(spec_, schedule_,
                     ServerContext{.parameters = scratch,
                                   .sgd = sgd_options(spec_),
                                   .uplink = uplink_codec_spec(spec_, 0),
                                   .downlink = downlink_codec_spec(spec_),
                                   .clock = &clock})
        ->restore(c.role_state);
    nlohmann::json::parse(c.driver_state).at("recorder").at("epoch");
    return c;
  } catch (const CheckpointError& e) {
    throw ConfigError(fmt::format("--resume {}: {}", path, e.what()));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("--resume {}: {}", path, e.what()));
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("--resume {}: checkpoint corrupt: {}", path, e.what()));
  }
}

bool Checkpointer::maybe_write(const ServerRole& role, RunRecorder& recorder,
                               std::span<const float> parameters, const nlohmann::json& events,
                               std::int64_t iteration_before, int epochs_before,
                               const std::string& path, bool now) {
  const std::int64_t every = spec_.checkpoint_every;
  const std::int64_t it = role.iteration();
  if (every <= 0 || it == iteration_before || role.finished()) return false;
  const bool epoch_end = recorder.epochs_done() != epochs_before;
  if (!now && !epoch_end && it / every == iteration_before / every) return false;
  SteadyClock clock;
  recorder.write_evaluated(/*wait=*/true);  // the checkpoint holds the rows written so far
  recorder.sync_rows();                     // ... durably
  Checkpoint c{.header = header(),
               .iteration = it,
               .epochs_done = recorder.epochs_done(),
               .role_state = role.snapshot(),
               .driver_state =
                   nlohmann::json{{"recorder", recorder.snapshot(it)}, {"events", events}}.dump()};
  c.parameters.assign(parameters.begin(), parameters.end());
  for (int w = 0; w < spec_.node_count; ++w)
    c.worker_batches.push_back(role.worker_batches(w));
  write_checkpoint_file(path, encode_checkpoint(c));  // IoError on failure
  ++written_;
  last_iteration_ = it;
  spdlog::info("checkpoint at iteration {} (epoch {}) in {}", it, c.epochs_done,
               fmt_duration(clock.now()));
  return true;
}

}  // namespace psgd
