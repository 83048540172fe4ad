#include "core/job_spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <string_view>

#include "core/error.h"
#include "core/model_average.h"
#include "core/straggler.h"

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
  static const std::vector<std::string> v{"ssgd",      "asgd",      "ssp",
                                          "local_sgd", "allreduce", "broadcast"};
  return v;
}
const std::vector<std::string>& known_codecs() {
  static const std::vector<std::string> v{"plain", "fp16",  "bf16", "qsgd", "sign",
                                          "topk",  "randk", "gc",   "ndc",  "ccdc"};
  return v;
}
const std::vector<std::string>& known_server_codecs() {
  static const std::vector<std::string> v{"plain", "fp16", "bf16"};
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
  static const std::vector<std::string> v{"iid", "non-iid"};
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
  require_one_of("server_codec", server_codec, known_server_codecs());
  require_one_of("error_feedback", error_feedback, {"auto", "on", "off"});
  require_one_of("momentum_at", momentum_at, {"auto", "worker", "server"});
  if (codec == "gc" || codec == "ndc") validate_gradient_coding();
  if (codec == "ccdc") validate_ccdc();
  if (momentum_at == "worker" && psgd == "local_sgd") {
    throw ConfigError(
        "--momentum_at worker with --psgd local_sgd: local SGD workers already run their own "
        "optimiser; use --momentum_at server or auto");
  }
  if (codec_levels < 1 || codec_levels > 32767) {
    throw ConfigError(
        fmt::format("--codec_levels {}: qsgd needs between 1 and 32767 levels", codec_levels));
  }
  if (!(codec_ratio > 0.0 && codec_ratio <= 1.0)) {
    throw ConfigError(fmt::format("--codec_ratio {}: must be in (0, 1]", codec_ratio));
  }
  if (codec_scope != "global" && codec_scope != "tensor") {
    throw ConfigError(fmt::format("--codec_scope {}: choose global or tensor", codec_scope));
  }
  if (!(codec_warmup_epochs >= 0.0)) {
    throw ConfigError(
        fmt::format("--codec_warmup_epochs {}: must be 0 (none) or positive", codec_warmup_epochs));
  }
  if (!(codec_warmup_ratio > 0.0 && codec_warmup_ratio <= 1.0)) {
    throw ConfigError(
        fmt::format("--codec_warmup_ratio {}: must be in (0, 1]", codec_warmup_ratio));
  }
  if (codec_bucket < -1) {
    throw ConfigError(fmt::format(
        "--codec_bucket {}: must be -1 (the codec's default), 0 (one norm per vector) or a "
        "bucket size",
        codec_bucket));
  }
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
  validate_strategy_options();
  if (checkpoint_every < 0) {
    throw ConfigError(fmt::format("--checkpoint_every {}: must not be negative (0: no checkpoints)",
                                  checkpoint_every));
  }
  if (checkpoint_every > 0 && (psgd != "ssgd" || codec == "gc" || codec == "ndc")) {
    throw ConfigError(fmt::format(
        "--checkpoint_every with --psgd {}{}: checkpoint and resume are implemented for ssgd "
        "(without gc / ndc) only",
        psgd, psgd == "ssgd" ? fmt::format(" --codec {}", codec) : std::string()));
  }
}

void JobSpec::validate_gradient_coding() const {
  if (psgd != "ssgd") {
    throw ConfigError(fmt::format(
        "--codec {} with --psgd {}: gradient coding decodes one synchronous round at a time; "
        "use --psgd ssgd",
        codec, psgd));
  }
  if (codec == "gc" && redundancy < 2) {
    throw ConfigError(fmt::format(
        "--codec gc with --redundancy {}: gradient coding needs every block on at least 2 "
        "workers (--redundancy 2..node_count)",
        redundancy));
  }
  if (node_count % redundancy != 0) {
    throw ConfigError(fmt::format(
        "--codec {} with --redundancy {} and --node_count {}: the fractional-repetition layout "
        "needs the redundancy to divide node_count",
        codec, redundancy, node_count));
  }
  if (wait_for > 0) {
    throw ConfigError(fmt::format(
        "--codec {} with --wait_for {}: the {} server closes a round as soon as every group of "
        "--redundancy workers has answered; drop --wait_for",
        codec, wait_for, codec));
  }
  if (error_feedback == "on" || momentum_at == "worker") {
    throw ConfigError(
        fmt::format("--codec {} sends exact fp32 sums: it takes neither --error_feedback on nor "
                    "--momentum_at worker",
                    codec));
  }
}

void JobSpec::validate_ccdc() const {
  if (psgd != "broadcast") {
    throw ConfigError(fmt::format(
        "--codec ccdc with --psgd {}: coded multicast is an exchange between the workers; use "
        "--psgd broadcast",
        psgd));
  }
  if (redundancy < 1 || redundancy >= node_count) {
    throw ConfigError(
        fmt::format("--codec ccdc with --redundancy {} and --node_count {}: coded multicast needs "
                    "1 <= redundancy < node_count (one block per r-subset of the workers)",
                    redundancy, node_count));
  }
  // C(n, r + 1) coded multicast groups: a message per group and worker every iteration.
  constexpr std::uint64_t kMaxGroups = 100000;
  std::uint64_t groups = 1;
  const int k = std::min(redundancy + 1, node_count - redundancy - 1);
  for (int i = 1; i <= k && groups <= kMaxGroups; ++i)
    groups =
        groups * static_cast<std::uint64_t>(node_count - k + i) / static_cast<std::uint64_t>(i);
  if (groups > kMaxGroups) {
    throw ConfigError(fmt::format(
        "--codec ccdc with --redundancy {} and --node_count {}: more than {} coded multicast "
        "groups (C({}, {})) per iteration; use a redundancy closer to 1 or to node_count",
        redundancy, node_count, kMaxGroups, node_count, redundancy + 1));
  }
  if (error_feedback == "on" || momentum_at == "worker") {
    throw ConfigError(
        "--codec ccdc sends exact fp32 block gradients: it takes neither --error_feedback on nor "
        "--momentum_at worker");
  }
}

void JobSpec::validate_strategy_options() const {
  auto only_with = [&](bool given, const char* flag, const char* strategy) {
    if (given && psgd != strategy) {
      throw ConfigError(
          fmt::format("--{} applies to --psgd {} only, not --psgd {}", flag, strategy, psgd));
    }
  };
  if (wait_for < 0 || wait_for > node_count) {
    throw ConfigError(fmt::format(
        "--wait_for {} with --node_count {}: a round closes with between 1 and node_count "
        "gradients (0: all)",
        wait_for, node_count));
  }
  only_with(wait_for > 0, "wait_for", "ssgd");
  if (staleness < -1) throw ConfigError(fmt::format("--staleness {}: must be >= 0", staleness));
  only_with(staleness >= 0, "staleness", "ssp");
  if (staleness_lr && psgd != "asgd" && psgd != "ssp") {
    throw ConfigError(
        fmt::format("--staleness_lr applies to --psgd asgd or ssp only, not --psgd {}", psgd));
  }
  if (!(delay_compensation >= 0) || !std::isfinite(delay_compensation)) {
    throw ConfigError(fmt::format("--delay_compensation {}: must be a finite lambda >= 0 (0: off)",
                                  delay_compensation));
  }
  only_with(delay_compensation > 0, "delay_compensation", "asgd");
  if (delay_compensation_mode != "adaptive" && delay_compensation_mode != "constant") {
    throw ConfigError(fmt::format("--delay_compensation_mode {}: choose adaptive or constant",
                                  delay_compensation_mode));
  }
  if (model_average != "auto") {
    if (parse_model_average(model_average) > 0) {  // throws ConfigError naming the flag
      if (psgd != "ssgd" && psgd != "asgd" && psgd != "ssp" && psgd != "local_sgd") {
        throw ConfigError(fmt::format(
            "--model_average {} with --psgd {}: averaging applies to the parameter-server "
            "strategies (ssgd, asgd, ssp, local_sgd), whose server holds the model",
            model_average, psgd));
      }
      if (checkpoint_every > 0) {
        throw ConfigError(
            "--model_average with --checkpoint_every: checkpoints do not hold the average; use "
            "--model_average off");
      }
    }
  }
  if (sync_period < 0) {
    throw ConfigError(fmt::format("--sync_period {}: must be at least 1", sync_period));
  }
  only_with(sync_period > 0, "sync_period", "local_sgd");
  if (local_after_epochs < 0) {
    throw ConfigError(
        fmt::format("--local_after_epochs {}: must not be negative", local_after_epochs));
  }
  only_with(local_after_epochs > 0, "local_after_epochs", "local_sgd");
  if (allreduce_backend != "ring" && allreduce_backend != "gloo") {
    throw ConfigError(
        fmt::format("--allreduce_backend {}: known backends are ring and gloo", allreduce_backend));
  }
  only_with(allreduce_backend != "ring", "allreduce_backend", "allreduce");
  if (psgd == "allreduce" && codec != "plain") {
    throw ConfigError(fmt::format(
        "--psgd allreduce with --codec {}: an allreduce sums fp32 gradients at every hop, so it "
        "carries --codec plain only",
        codec));
  }
  DelayModel::parse(delay);  // throws ConfigError naming --delay
  if (dirichlet_alpha < 0) {
    throw ConfigError(fmt::format("--dirichlet_alpha {}: must be positive", dirichlet_alpha));
  }
  if (shards_per_node < 0) {
    throw ConfigError(fmt::format("--shards_per_node {}: must be positive", shards_per_node));
  }
  const bool skew = dirichlet_alpha > 0 || shards_per_node > 0;
  if (block_assignment == "non-iid") {
    if (dirichlet_alpha > 0 && shards_per_node > 0) {
      throw ConfigError(
          "--dirichlet_alpha and --shards_per_node are two kinds of non-iid split; give one");
    }
    if (!skew) {
      throw ConfigError(
          "--block_assignment non-iid needs --dirichlet_alpha A (label proportions) or "
          "--shards_per_node S (label-sorted shards)");
    }
  } else if (skew) {
    throw ConfigError(
        fmt::format("--{} applies to --block_assignment non-iid only, not --block_assignment {}",
                    dirichlet_alpha > 0 ? "dirichlet_alpha" : "shards_per_node", block_assignment));
  }
}

double JobSpec::model_average_decay() const {
  // auto: the asynchronous strategies, whose last iterate carries the noise of stale gradients,
  // evaluate an average (core/model_average.h has the measurements); the synchronous ones their
  // last iterate, as before the option existed (ssgd then matches torch.optim step for step).
  if (model_average == "auto")
    return psgd == "asgd" || psgd == "ssp" ? kAsyncModelAverageDecay : 0.0;
  return parse_model_average(model_average);
}

std::string JobSpec::short_name() const {
  return fmt::format("{}-{}-n{}", psgd, codec, node_count);
}

// One line per field; clang-format cannot settle on a layout for these macros.
// clang-format off
#define PSGD_STRATEGY_FIELDS(X) \
  X(wait_for)                   \
  X(staleness)                  \
  X(staleness_lr)               \
  X(delay_compensation)         \
  X(delay_compensation_mode)    \
  X(sync_period)                \
  X(local_after_epochs)         \
  X(delay)                      \
  X(dirichlet_alpha)            \
  X(shards_per_node)            \
  X(allreduce_backend)          \
  X(model_average)

#define PSGD_JOB_FIELDS(X) \
  X(node_count)            \
  X(batch_size)            \
  X(redundancy)            \
  X(codec)                 \
  X(psgd)                  \
  X(learn_rate)            \
  X(epochs)                \
  X(working_ports)         \
  X(block_assignment)      \
  X(model)                 \
  X(dataset)               \
  X(momentum)              \
  X(weight_decay)          \
  X(nesterov)              \
  X(train_samples)         \
  X(test_samples)          \
  X(seed)                  \
  X(device)                \
  X(output)                \
  X(threads)               \
  X(join_timeout)          \
  X(io_timeout)            \
  X(checkpoint_every)      \
  X(codec_levels)          \
  X(codec_ratio)           \
  X(codec_bucket)          \
  X(error_feedback)        \
  X(codec_scope)           \
  X(codec_warmup_epochs)   \
  X(codec_warmup_ratio)    \
  X(server_codec)          \
  X(momentum_at)           \
  PSGD_STRATEGY_FIELDS(X)  \
  X(normalize)             \
  X(target)                \
  X(validation_split)      \
  X(label_column)          \
  X(ship_data)
// clang-format on

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
