#include "experiments/job_spec.h"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/fields_json.h"
#include "psgd/factory.h"

namespace psgd {

void RunOptions::validate() const {
  if (working_ports.empty()) throw ConfigError("--working_ports: give at least one port");
  for (int p : working_ports) {
    if (p < 0 || p > 65535) {
      throw ConfigError(fmt::format("--working_ports {}: a port is between 0 and 65535", p));
    }
  }
  if (threads < 0) throw ConfigError(fmt::format("--threads {}: must not be negative", threads));
  if (busy_poll_us < 0 || busy_poll_us > 1'000'000) {
    throw ConfigError(fmt::format(
        "--busy_poll_us {}: give microseconds from 0 (never poll; the default) to 1000000",
        busy_poll_us));
  }
  if (!(join_timeout > 0.0) || !(io_timeout > 0.0) || !std::isfinite(join_timeout) ||
      !std::isfinite(io_timeout)) {
    throw ConfigError("--join_timeout / --io_timeout: must be positive seconds");
  }
  if (on_divergence != "stop" && on_divergence != "continue") {
    throw ConfigError(fmt::format(
        "--on_divergence {}: choose stop (end a run whose loss is NaN or infinite; the default) "
        "or continue (train on regardless)",
        on_divergence));
  }
  if (!(ship_data == "never" || ship_data == "auto" || ship_data == "always")) {
    throw ConfigError(fmt::format(
        "--ship_data {}: choose never (each worker reads its own copy; the default), auto (ship "
        "only to workers whose rows differ) or always (the bare --ship_data)",
        ship_data.value));
  }
  if (checkpoint_every < 0) {
    throw ConfigError(fmt::format("--checkpoint_every {}: must not be negative (0: no checkpoints)",
                                  checkpoint_every));
  }
}

void JobSpec::validate() const {
  StrategyJob::validate();
  nn::DataOptions::validate();
  nn::PlacementOptions::validate();
  nn::ModelOptions::validate();
  DelayOptions::validate();
  RunOptions::validate();
  if (model == "autoencoder" && target != "xx") {
    throw ConfigError("--model autoencoder reconstructs its input: it needs --target xx");
  }
  if (target == "regression" && block_assignment == "non-iid") {
    throw ConfigError(
        "--block_assignment non-iid with --target regression: a label-skewed split needs class "
        "labels; use iid or contiguous");
  }
  if (checkpoint_every > 0 && !supports_checkpoints(*this)) {
    const CodingEntry* coding = coding_of(*this);
    throw ConfigError(fmt::format("--checkpoint_every with --psgd {} --codec {}: {}", psgd, codec,
                                  coding && !coding->no_checkpoints_reason.empty()
                                      ? std::string(coding->no_checkpoints_reason)
                                      : std::string("its roles cannot snapshot their state")));
  }
  if (checkpoint_every > 0 && overlap && psgd == "ssgd") {
    // A worker's gradient computed ahead has drawn a batch and moved its codec's state, and a
    // checkpoint holds neither. (allreduce's --overlap computes nothing ahead: its checkpoints
    // are those of allreduce without it.)
    throw ConfigError(
        "--checkpoint_every with --overlap: not supported (a checkpoint cannot hold the gradient "
        "a worker computed ahead); choose one of the two");
  }
  if (local_data) validate_local_data();
  if (checkpoint_every > 0 && allreduce_on_loss == "shrink") {
    // A checkpoint holds every slot's worker; a resumed run would restart the full ring.
    throw ConfigError(
        "--checkpoint_every with --allreduce_on_loss shrink: not supported yet (a checkpoint "
        "taken after the ring shrank cannot record its members); choose one of the two");
  }
}

// --local_data: what needs rows the server places, or rows it reads, cannot mean anything when
// every worker brings its own file.
void JobSpec::validate_local_data() const {
  auto refuse = [](const std::string& what, const std::string& why) {
    throw ConfigError(fmt::format("--local_data with {}: {}", what, why));
  };
  if (redundancy > 1) {
    refuse(fmt::format("--redundancy {}", redundancy),
           "each worker holds only its own file, so no block is held by several workers; use "
           "--redundancy 1");
  }
  if (coding_of(*this) != nullptr) {
    refuse(fmt::format("--codec {}", codec),
           "a coded scheme computes on data blocks that several workers share, and local files "
           "share none");
  }
  if (ships_data()) {
    refuse(fmt::format("--ship_data {}", ship_data.value),
           "the server never reads the workers' rows, so it has none to ship");
  }
  if (block_assignment != "iid" || dirichlet_alpha > 0 || shards_per_node > 0) {
    refuse(fmt::format("--block_assignment {}", block_assignment),
           "the server places no rows; each worker's file is its share (leave "
           "--block_assignment, --dirichlet_alpha and --shards_per_node out)");
  }
  if (normalize != "none") {
    refuse(fmt::format("--normalize {}", normalize),
           "its statistics would come from the server's training rows, which no worker trains "
           "on; normalise the files beforehand");
  }
  if (validation_split > 0) {
    refuse("--validation_split",
           "the server holds no training rows to hold out; give it a test set (its --dataset)");
  }
  if (checkpoint_every > 0) {
    refuse("--checkpoint_every",
           "a resumed run would need every worker's file again and is not supported yet; leave "
           "--checkpoint_every out");
  }
}

void to_json(nlohmann::json& j, const JobSpec& spec) {
  j = nlohmann::json::object();
  fields_to_json(spec, j);
}

void from_json(const nlohmann::json& j, JobSpec& spec) {
  if (!j.is_object()) throw ConfigError("job configuration: expected a JSON object");
  std::set<std::string> consumed;
  fields_from_json(j, spec, consumed, "job configuration");
  for (const auto& [key, value] : j.items()) {
    if (!consumed.count(key)) {
      throw ConfigError(fmt::format("job configuration: unknown key \"{}\"", key));
    }
  }
}

std::string loss_hint(const JobSpec& spec, int workers_left) {
  const auto hint = strategy_of(spec).on_loss_hint;
  if (hint == nullptr) return "";
  const LossHint h = hint(spec, workers_left);
  if (h.change != nullptr) {
    JobSpec changed = spec;
    h.change(changed);
    try {
      changed.validate();
    } catch (const ConfigError&) {
      return "";
    }
  }
  return h.text;
}

std::string job_config_hash(const JobSpec& spec, const std::string& model_sha256) {
  nlohmann::json j = spec;
  if (!model_sha256.empty()) j["model_sha256"] = model_sha256;
  for (const char* key :
       {"output", "threads", "busy_poll_us", "join_timeout", "io_timeout", "working_ports",
        "checkpoint_every", "save_every_epoch", "on_divergence"}) {
    j.erase(key);
  }
  // Where the rows come from does not change them (every worker's are checked); a bool keeps the
  // hash of jobs written when --ship_data was one (a checkpoint of such a job still resumes).
  j["ship_data"] = spec.ships_data();
  // Jobs written before --local_data existed keep their hash.
  if (!spec.local_data) j.erase("local_data");
  const std::string text = j.dump();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string hex;
  for (unsigned char c : digest)
    hex += fmt::format("{:02x}", c);
  return hex;
}

}  // namespace psgd
