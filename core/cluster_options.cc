#include "core/cluster_options.h"

#include <fmt/format.h>

#include "core/error.h"

namespace psgd {

void ClusterOptions::validate() const {
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
  if (epochs < 1) throw ConfigError(fmt::format("--epochs {}: must be at least 1", epochs));
}

}  // namespace psgd
