#include "core/job_spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string_view>

#include "core/error.h"

namespace psgd {
namespace {

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

void require_one_of(const char* flag, const std::string& value,
                    const std::vector<std::string>& allowed) {
  if (!contains(allowed, value)) {
    throw ConfigError(fmt::format("--{} {}: unknown value; choose one of: {}", flag, value,
                                  fmt::join(allowed, ", ")));
  }
}

}  // namespace

const std::vector<std::string>& known_strategies() {
  static const std::vector<std::string> v{"ssgd"};
  return v;
}
const std::vector<std::string>& known_codecs() {
  static const std::vector<std::string> v{"plain"};
  return v;
}
const std::vector<std::string>& known_models() {
  static const std::vector<std::string> v{"mlp", "cnn", "resnet8", "autoencoder"};
  return v;
}
const std::vector<std::string>& known_normalizers() {
  static const std::vector<std::string> v{"none", "scale", "minmax", "zscore"};
  return v;
}
const std::vector<std::string>& known_targets() {
  static const std::vector<std::string> v{"xy", "xx"};
  return v;
}
const std::vector<std::string>& known_block_assignments() {
  static const std::vector<std::string> v{"iid"};
  return v;
}

void JobSpec::validate() const {
  if (node_count < 1) {
    throw ConfigError(fmt::format("--node_count {}: need at least 1 worker", node_count));
  }
  if (node_count > 1024) {
    throw ConfigError(
        fmt::format("--node_count {}: at most 1024 workers are supported", node_count));
  }
  if (batch_size < 1) {
    throw ConfigError(fmt::format("--batch_size {}: must be at least 1", batch_size));
  }
  if (redundancy < 1 || redundancy > node_count) {
    throw ConfigError(fmt::format(
        "--redundancy {} with --node_count {}: each block must be held by between 1 and "
        "node_count workers",
        redundancy, node_count));
  }
  require_one_of("psgd", psgd, known_strategies());
  require_one_of("codec", codec, known_codecs());
  require_one_of("model", model, known_models());
  require_one_of("block_assignment", block_assignment, known_block_assignments());
  if (!(learn_rate > 0.0)) {
    throw ConfigError(fmt::format("--learn_rate {}: must be positive", learn_rate));
  }
  if (epochs < 1) throw ConfigError(fmt::format("--epochs {}: must be at least 1", epochs));
  if (working_ports.empty()) throw ConfigError("--working_ports: give at least one port");
  for (int p : working_ports) {
    if (p < 0 || p > 65535) {
      throw ConfigError(fmt::format("--working_ports {}: a port is between 0 and 65535", p));
    }
  }
  if (momentum < 0.0 || momentum >= 1.0) {
    throw ConfigError(fmt::format("--momentum {}: must be in [0, 1)", momentum));
  }
  if (nesterov && momentum == 0.0) {
    throw ConfigError("--nesterov needs a non-zero --momentum");
  }
  if (weight_decay < 0.0) {
    throw ConfigError(fmt::format("--weight_decay {}: must not be negative", weight_decay));
  }
  if (train_samples < 0 || test_samples < 0) {
    throw ConfigError("--train_samples / --test_samples: must not be negative (0 means all)");
  }
  if (device != "auto" && device != "cpu" && device != "cuda") {
    throw ConfigError(fmt::format("--device {}: choose auto, cpu or cuda", device));
  }
  require_one_of("normalize", normalize, known_normalizers());
  require_one_of("target", target, known_targets());
  if (model == "autoencoder" && target != "xx") {
    throw ConfigError("--model autoencoder reconstructs its input: it needs --target xx");
  }
  if (!(validation_split >= 0.0 && validation_split < 1.0)) {
    throw ConfigError(fmt::format("--validation_split {}: must be in [0, 1)", validation_split));
  }
  if (threads < 0) throw ConfigError(fmt::format("--threads {}: must not be negative", threads));
  if (!(join_timeout > 0.0) || !(io_timeout > 0.0)) {
    throw ConfigError("--join_timeout / --io_timeout: must be positive seconds");
  }
}

std::string JobSpec::short_name() const {
  return fmt::format("{}-{}-n{}", psgd, codec, node_count);
}

#define PSGD_JOB_FIELDS(X)                                                                         \
  X(node_count)                                                                                    \
  X(batch_size)                                                                                    \
  X(redundancy) X(codec) X(psgd) X(learn_rate) X(epochs) X(working_ports) X(block_assignment)      \
      X(model) X(dataset) X(momentum) X(weight_decay) X(nesterov) X(train_samples) X(test_samples) \
          X(seed) X(device) X(output) X(threads) X(join_timeout) X(io_timeout) X(normalize)        \
              X(target) X(validation_split) X(label_column) X(ship_data)

void to_json(nlohmann::json& j, const JobSpec& spec) {
  j = nlohmann::json::object();
#define PSGD_TO_JSON(name) j[#name] = spec.name;
  PSGD_JOB_FIELDS(PSGD_TO_JSON)
#undef PSGD_TO_JSON
}

void from_json(const nlohmann::json& j, JobSpec& spec) {
  if (!j.is_object()) throw ConfigError("job configuration: expected a JSON object");
  static const std::vector<std::string> keys{
#define PSGD_KEY(name) #name,
      PSGD_JOB_FIELDS(PSGD_KEY)
#undef PSGD_KEY
  };
  for (const auto& [key, value] : j.items()) {
    if (!contains(keys, key)) {
      throw ConfigError(fmt::format("job configuration: unknown key \"{}\"", key));
    }
  }
  try {
    if (j.contains("working_ports") && j.at("working_ports").is_number_integer()) {
      spec.working_ports = {j.at("working_ports").get<int>()};
    }
#define PSGD_FROM_JSON(name)                                                    \
  if (j.contains(#name) &&                                                      \
      !(std::string_view(#name) == "working_ports" && j.at(#name).is_number())) \
    j.at(#name).get_to(spec.name);
    PSGD_JOB_FIELDS(PSGD_FROM_JSON)
#undef PSGD_FROM_JSON
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("job configuration: {}", e.what()));
  }
}

}  // namespace psgd
