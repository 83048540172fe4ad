#pragma once
// The explicit codec factory (no static self-registration, STYLE.md "Avoid").
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

struct JobSpec;

struct CodecSpec {
  std::string name = "plain";
  int levels = 8;       // qsgd: quantisation levels s
  double ratio = 0.01;  // topk / randk: fraction of coordinates kept
  // qsgd, sign: elements per norm / scale; 0: the whole vector; -1: the codec's default
  // (default_bucket()).
  std::int64_t bucket = -1;
  std::string error_feedback = "auto";  // auto (on for sign, topk, randk) | on | off
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

// The bucket a codec uses when none is given: 512 for qsgd (the QSGD paper's experiments), 0 (one
// scale for the whole gradient) for sign, which trains better that way with error feedback
// (codecs/sign.h).
std::uint64_t default_bucket(const std::string& codec);

// Throws ConfigError for an unknown name (listing the known ones) or a bad option.
std::unique_ptr<Codec> make_codec(const CodecSpec& spec);

// Whether make_codec wraps the codec in ErrorFeedbackCodec.
bool uses_error_feedback(const CodecSpec& spec);

// Whether the job applies --momentum on the workers, before compression (--momentum_at worker,
// or auto with error feedback on and a gradient-pushing strategy, or auto with asgd / ssp), so
// that the server's SGD runs without momentum. See codecs/momentum.h for why error feedback wants
// it there, and psgd/async_update.h for why the asynchronous strategies do.
bool momentum_at_worker(const JobSpec& job);

// The specs a job asks for: worker -> server (--codec and its options; `sender` picks the seed
// stream, e.g. the worker id) and server -> worker (--server_codec, never with error feedback).
// A worker also passes what only it knows: the iterations per epoch (for --codec_warmup_epochs;
// 0: no warm-up) and its model's tensor sizes in flat order (for --codec_scope tensor; empty:
// global). Receivers need neither (the wire format does not depend on them).
CodecSpec uplink_codec_spec(const JobSpec& job, std::uint64_t sender,
                            std::int64_t iterations_per_epoch = 0,
                            std::vector<std::uint64_t> tensor_sizes = {});
CodecSpec downlink_codec_spec(const JobSpec& job);

}  // namespace psgd
