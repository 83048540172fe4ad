#include "codecs/factory.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "codecs/codec_table.h"
#include "codecs/error_feedback.h"
#include "codecs/momentum.h"
#include "core/error.h"

namespace psgd {
namespace {

const CodecEntry& entry_of(const std::string& name) {
  if (const CodecEntry* e = find_codec(name)) return *e;
  throw ConfigError(fmt::format("--codec {}: unknown codec; choose one of: {}", name,
                                fmt::join(codec_names(), ", ")));
}

}  // namespace

bool uses_error_feedback(const CodecSpec& spec) {
  if (spec.error_feedback == "on") return true;
  if (spec.error_feedback == "off") return false;
  if (spec.error_feedback == "auto") return entry_of(spec.name).error_feedback_by_default;
  throw ConfigError(
      fmt::format("--error_feedback {}: choose auto, on or off", spec.error_feedback));
}

std::uint64_t default_bucket(const std::string& codec) {
  return entry_of(codec).default_bucket;
}

std::unique_ptr<Codec> make_codec(const CodecSpec& spec) {
  const CodecEntry& entry = entry_of(spec.name);
  if (spec.bucket < -1) {
    throw ConfigError(
        fmt::format("--codec_bucket {}: must be -1 (the codec's default), 0 (one "
                    "norm per vector) or a bucket size",
                    spec.bucket));
  }
  const std::uint64_t bucket =
      spec.bucket < 0 ? entry.default_bucket : static_cast<std::uint64_t>(spec.bucket);
  std::unique_ptr<Codec> codec = entry.make(spec, bucket);
  if (uses_error_feedback(spec)) codec = std::make_unique<ErrorFeedbackCodec>(std::move(codec));
  if (spec.momentum > 0.0f) {
    // topk's momentum factor masking (DGC): the momentum of the coordinates sent is zeroed.
    codec = std::make_unique<MomentumCorrectionCodec>(std::move(codec), spec.momentum,
                                                      spec.nesterov, spec.name == "topk");
  }
  return codec;
}

}  // namespace psgd
