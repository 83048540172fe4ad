#include "codecs/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "codecs/codec_table.h"
#include "core/error.h"

namespace psgd {

std::string CodecOptions::server_codec_help() {
  return fmt::format("Codec of the parameters, server to worker: {} (a cast of every value)",
                     fmt::join(dense_codec_names(), "|"));
}

void CodecOptions::validate() const {
  if (codec_levels < 1 || codec_levels > 32767) {
    throw ConfigError(
        fmt::format("--codec_levels {}: qsgd needs between 1 and 32767 levels", codec_levels));
  }
  if (!(codec_ratio > 0.0 && codec_ratio <= 1.0)) {
    throw ConfigError(fmt::format("--codec_ratio {}: must be in (0, 1]", codec_ratio));
  }
  if (codec_rank < 1 || codec_rank > 64) {
    throw ConfigError(fmt::format("--codec_rank {}: must be between 1 and 64", codec_rank));
  }
  if (codec_bucket < -1) {
    throw ConfigError(fmt::format(
        "--codec_bucket {}: must be -1 (the codec's default), 0 (one norm per vector) or a "
        "bucket size",
        codec_bucket));
  }
  if (error_feedback != "auto" && error_feedback != "on" && error_feedback != "off") {
    throw ConfigError(fmt::format(
        "--error_feedback {}: unknown value; choose one of: auto, on, off", error_feedback));
  }
  if (codec_scope != "global" && codec_scope != "tensor") {
    throw ConfigError(fmt::format("--codec_scope {}: choose global or tensor", codec_scope));
  }
  if (!(codec_warmup_epochs >= 0.0) || !std::isfinite(codec_warmup_epochs)) {
    throw ConfigError(
        fmt::format("--codec_warmup_epochs {}: must be 0 (none) or positive", codec_warmup_epochs));
  }
  if (!(codec_warmup_ratio > 0.0 && codec_warmup_ratio <= 1.0)) {
    throw ConfigError(
        fmt::format("--codec_warmup_ratio {}: must be in (0, 1]", codec_warmup_ratio));
  }
  const auto dense = dense_codec_names();
  if (std::find(dense.begin(), dense.end(), server_codec) == dense.end()) {
    throw ConfigError(
        fmt::format("--server_codec {}: unknown value; choose one of: {} (parameters replace the "
                    "worker's model, so only casts of every value make sense)",
                    server_codec, fmt::join(dense, ", ")));
  }
}

}  // namespace psgd
