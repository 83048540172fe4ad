#include "experiments/server/checkpointer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "experiments/format.h"
#include "experiments/recorder.h"
#include "psgd/factory.h"

namespace psgd {

Checkpointer::Checkpointer(const JobSpec& spec, const Schedule& schedule,
                           std::size_t num_parameters, std::size_t num_buffers,
                           std::string model_sha256)
    : spec_(spec),
      schedule_(schedule),
      num_parameters_(num_parameters),
      num_buffers_(num_buffers),
      model_sha256_(std::move(model_sha256)),
      workers_offer_(strategy_of(spec).topology == Topology::kPeerToPeer),
      expected_(static_cast<std::size_t>(spec.node_count), false),
      states_(static_cast<std::size_t>(spec.node_count)),
      offered_(static_cast<std::size_t>(spec.node_count)) {}

CheckpointHeader Checkpointer::header() const {
  return CheckpointHeader{.model = spec_.model,
                          .num_parameters = num_parameters_,
                          .config_hash = job_config_hash(spec_, model_sha256_),
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
    if (c.worker_states.empty()) c.worker_states.resize(c.worker_batches.size());
    // The strategy must accept its state before any worker is asked to join.
    std::vector<float> scratch(c.parameters);
    std::vector<float> buffers(num_buffers_);
    SteadyClock clock;
    make_server_role(spec_, schedule_,
                     ServerContext{.parameters = scratch,
                                   .buffers = buffers,
                                   .optimizer = optimizer_spec(spec_, schedule_),
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

bool Checkpointer::due(std::int64_t before, std::int64_t after) const {
  return checkpoint_due(schedule_, spec_.checkpoint_every, before, after);
}

void Checkpointer::begin(std::span<const int> workers, std::int64_t iteration) {
  PSGD_CHECK(!collecting_, "a checkpoint began while another was collecting states");
  collecting_ = true;
  iteration_ = iteration;
  std::fill(expected_.begin(), expected_.end(), false);
  for (auto& s : states_)
    s.reset();
  for (int w : workers) {
    const auto i = static_cast<std::size_t>(w);
    expected_.at(i) = true;
    // Peer-to-peer: a worker that reached the iteration before the round closed has offered it
    // (the workers run ahead of the server; states of later checkpoints wait for theirs).
    auto& offered = offered_[i];
    offered.erase(offered.begin(), offered.lower_bound(iteration));
    if (auto it = offered.find(iteration); it != offered.end()) {
      states_[i] = std::move(it->second);
      offered.erase(it);
    }
  }
}

bool Checkpointer::holds(int worker) const {
  if (!collecting_) return false;
  const auto w = static_cast<std::size_t>(worker);
  return !expected_.at(w) || states_[w].has_value();
}

void Checkpointer::hold(int worker, Message&& message, std::size_t bytes) {
  held_.push_back(Held{.worker = worker, .message = std::move(message), .bytes = bytes});
}

void Checkpointer::on_state(int worker, WorkerState&& state) {
  const auto w = static_cast<std::size_t>(worker);
  if (collecting_ && expected_.at(w) && !states_[w] &&
      (!workers_offer_ || state.iteration == iteration_)) {
    states_[w] = std::move(state);
    return;
  }
  if (workers_offer_) {  // for a checkpoint yet to begin
    const std::int64_t it = state.iteration;
    offered_.at(w).insert_or_assign(it, std::move(state));
  }
}

bool Checkpointer::complete() const {
  if (!collecting_) return false;
  for (std::size_t w = 0; w < expected_.size(); ++w)
    if (expected_[w] && !states_[w]) return false;
  return true;
}

std::deque<Checkpointer::Held> Checkpointer::end() {
  collecting_ = false;
  for (auto& s : states_)
    s.reset();
  std::deque<Held> held;
  held.swap(held_);
  return held;
}

void Checkpointer::write(const ServerRole& role, RunRecorder& recorder, std::span<float> parameters,
                         const nlohmann::json& events, const std::string& path) {
  PSGD_CHECK(complete(), "checkpoint written before every worker's state arrived");
  SteadyClock clock;
  const std::int64_t it = role.iteration();
  const int first =
      static_cast<int>(std::find(expected_.begin(), expected_.end(), true) - expected_.begin());
  if (workers_offer_) {
    // The workers hold the model; all have the same (the server compares their hashes at every
    // epoch end). The lowest-numbered worker's parameters are the checkpoint's.
    PSGD_CHECK(first < spec_.node_count, "a peer-to-peer checkpoint without any worker");
    const auto& params = states_[static_cast<std::size_t>(first)]->params;
    if (params.size() != parameters.size()) {
      throw ProtocolError(fmt::format("worker {} sent {} parameters for the checkpoint, not {}",
                                      first, params.size(), parameters.size()));
    }
    std::copy(params.begin(), params.end(), parameters.begin());
  }
  recorder.write_evaluated(/*wait=*/true);  // the checkpoint holds the rows written so far
  recorder.sync_rows();                     // ... durably
  Checkpoint c{.header = header(),
               .iteration = it,
               .epochs_done = recorder.epochs_done(),
               .role_state = role.snapshot(),
               .driver_state =
                   nlohmann::json{{"recorder", recorder.snapshot(it)}, {"events", events}}.dump(),
               .average = recorder.average_state()};
  c.parameters.assign(parameters.begin(), parameters.end());
  for (int w = 0; w < spec_.node_count; ++w) {
    c.worker_batches.push_back(role.worker_batches(w));
    const auto& s = states_[static_cast<std::size_t>(w)];
    if (s) {
      c.worker_states.push_back(s->state);
    } else {
      c.worker_states.emplace_back();
    }
  }
  write_checkpoint_file(path, encode_checkpoint(c));  // IoError on failure
  ++written_;
  last_iteration_ = it;
  spdlog::info("checkpoint at iteration {} (epoch {}) in {}", it, c.epochs_done,
               fmt_duration(clock.now()));
}

}  // namespace psgd
