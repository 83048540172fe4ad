#include "psgd/options.h"

#include <fmt/format.h>

#include <cmath>

#include "codecs/codec_table.h"
#include "core/error.h"
#include "psgd/allreduce_compression.h"
#include "psgd/coding_table.h"
#include "psgd/strategy_table.h"

namespace psgd {

std::string StrategyOptions::psgd_help() {
  std::string text = "Synchronisation strategy:";
  for (const StrategyEntry& e : strategy_table())
    text += fmt::format(" {} ({});", e.name, e.summary);
  text.back() = '.';
  return text;
}

std::string StrategyOptions::codec_help() {
  std::string text = "Gradient codec, worker to server. Compressors:";
  for (const CodecEntry& e : codec_table())
    text += fmt::format(" {} ({});", e.name, e.summary);
  text +=
      " or a coded-redundancy scheme spending --redundancy, which replaces the strategy's "
      "roles:";
  for (const CodingEntry& e : coding_table())
    text += fmt::format(" {} ({}; --psgd {});", e.name, e.summary, e.strategy);
  text += " Under --psgd allreduce, --codec is what the allreduce sums:";
  for (const AllreduceCompressionEntry& e : allreduce_compression_table())
    text += fmt::format(" {} ({}; as DDP's {});", e.name, e.summary, e.ddp_hook);
  text.back() = '.';
  return text;
}

void StrategyOptions::validate() const {
  if (wait_for < 0) {
    throw ConfigError(
        fmt::format("--wait_for {}: must be 0 (all) or a number of gradients", wait_for));
  }
  if (staleness < -1) throw ConfigError(fmt::format("--staleness {}: must be >= 0", staleness));
  if (!(delay_compensation >= 0) || !std::isfinite(delay_compensation)) {
    throw ConfigError(fmt::format("--delay_compensation {}: must be a finite lambda >= 0 (0: off)",
                                  delay_compensation));
  }
  if (delay_compensation_mode != "adaptive" && delay_compensation_mode != "constant") {
    throw ConfigError(fmt::format("--delay_compensation_mode {}: choose adaptive or constant",
                                  delay_compensation_mode));
  }
  if (!(bucket_mb >= 0) || !(bucket_mb <= 1e6)) {
    throw ConfigError(fmt::format(
        "--bucket_mb {}: must be a size in MB from 0 (the default, 25) to 10^6", bucket_mb));
  }
  if (sync_period < 0) {
    throw ConfigError(fmt::format("--sync_period {}: must be at least 1", sync_period));
  }
  if (local_after_epochs < 0) {
    throw ConfigError(
        fmt::format("--local_after_epochs {}: must not be negative", local_after_epochs));
  }
  if (allreduce_backend != "ring" && allreduce_backend != "gloo" && allreduce_backend != "shm") {
    throw ConfigError(fmt::format("--allreduce_backend {}: known backends are ring, shm and gloo",
                                  allreduce_backend));
  }
  if (allreduce_on_loss != "fail" && allreduce_on_loss != "shrink") {
    throw ConfigError(
        fmt::format("--allreduce_on_loss {}: choose fail or shrink", allreduce_on_loss));
  }
}

}  // namespace psgd
