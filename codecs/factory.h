#pragma once
// The explicit codec factory (no static self-registration, STYLE.md "Avoid"): builds a compressor
// from codecs/codec_table.h and wraps it in the decorators a spec asks for.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

// One sender's or receiver's codec, with every option resolved (psgd::uplink_codec_spec builds
// it from a job).
struct CodecSpec {
  std::string name = "plain";
  int levels = 8;       // qsgd: quantisation levels s
  double ratio = 0.01;  // topk / randk: fraction of coordinates kept
  // qsgd, sign: elements per norm / scale; 0: the whole vector; -1: the codec's default
  // (CodecEntry::default_bucket).
  std::int64_t bucket = -1;
  std::string error_feedback = "auto";  // auto (the codec's default) | on | off
  std::uint64_t seed = 1;               // qsgd's rounding, randk's index draws
  // Sender-side momentum applied before the codec (and before error feedback):
  // MomentumCorrectionCodec. 0: none, the receiver's optimiser owns the momentum.
  float momentum = 0.0f;
  bool nesterov = false;
  // topk: the model's tensor sizes in flat order, for per-tensor selection (empty: one global
  // selection), and the sparsity warm-up (codecs/topk.h).
  std::vector<std::uint64_t> segments;
  std::int64_t warmup_steps = 0;
  double warmup_ratio = 0.25;
};

// The bucket a codec uses when none is given (its table entry's default_bucket; 0 for codecs
// without buckets). ConfigError for an unknown codec.
std::uint64_t default_bucket(const std::string& codec);

// Throws ConfigError for an unknown name (listing the known ones) or a bad option.
std::unique_ptr<Codec> make_codec(const CodecSpec& spec);

// Whether make_codec wraps the codec in ErrorFeedbackCodec (on, or auto and the codec's table
// entry says so). ConfigError for an unknown codec or --error_feedback value.
bool uses_error_feedback(const CodecSpec& spec);

}  // namespace psgd
