#include "codecs/factory.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "codecs/bf16.h"
#include "codecs/error_feedback.h"
#include "codecs/fp16.h"
#include "codecs/momentum.h"
#include "codecs/plain.h"
#include "codecs/qsgd.h"
#include "codecs/randk.h"
#include "codecs/sign.h"
#include "codecs/topk.h"
#include "core/error.h"
#include "core/job_spec.h"
#include "core/rng.h"

namespace psgd {

bool uses_error_feedback(const CodecSpec& spec) {
  if (spec.error_feedback == "on") return true;
  if (spec.error_feedback == "off") return false;
  if (spec.error_feedback == "auto") {
    return spec.name == "sign" || spec.name == "topk" || spec.name == "randk";
  }
  throw ConfigError(
      fmt::format("--error_feedback {}: choose auto, on or off", spec.error_feedback));
}

std::uint64_t default_bucket(const std::string& codec) {
  return codec == "qsgd" ? 512 : 0;
}

std::unique_ptr<Codec> make_codec(const CodecSpec& spec) {
  if (spec.bucket < -1) {
    throw ConfigError(
        fmt::format("--codec_bucket {}: must be -1 (the codec's default), 0 (one "
                    "norm per vector) or a bucket size",
                    spec.bucket));
  }
  const std::uint64_t bucket =
      spec.bucket < 0 ? default_bucket(spec.name) : static_cast<std::uint64_t>(spec.bucket);
  std::unique_ptr<Codec> codec;
  if (spec.name == "plain") {
    codec = std::make_unique<PlainCodec>();
  } else if (spec.name == "fp16") {
    codec = std::make_unique<Fp16Codec>();
  } else if (spec.name == "bf16") {
    codec = std::make_unique<Bf16Codec>();
  } else if (spec.name == "qsgd") {
    codec = std::make_unique<QsgdCodec>(
        QsgdOptions{.levels = spec.levels, .bucket = bucket, .seed = spec.seed});
  } else if (spec.name == "sign") {
    codec = std::make_unique<SignCodec>(bucket);
  } else if (spec.name == "topk") {
    codec = std::make_unique<TopkCodec>(TopkOptions{.ratio = spec.ratio,
                                                    .segments = spec.segments,
                                                    .warmup_steps = spec.warmup_steps,
                                                    .warmup_ratio = spec.warmup_ratio});
  } else if (spec.name == "randk") {
    codec = std::make_unique<RandkCodec>(spec.ratio, spec.seed);
  } else if (spec.name == "gc" || spec.name == "ndc") {
    throw ConfigError(fmt::format(
        "codec {}: gradient coding is done by the ssgd roles (psgd/gc.h), which send plain fp32",
        spec.name));
  } else if (spec.name == "ccdc") {
    throw ConfigError(
        "codec ccdc: coded multicast is done by the broadcast exchange's ccdc role (psgd/ccdc.h)");
  } else {
    throw ConfigError(fmt::format("--codec {}: unknown codec; choose one of: {}", spec.name,
                                  fmt::join(known_codecs(), ", ")));
  }
  if (uses_error_feedback(spec)) codec = std::make_unique<ErrorFeedbackCodec>(std::move(codec));
  if (spec.momentum > 0.0f) {
    codec = std::make_unique<MomentumCorrectionCodec>(std::move(codec), spec.momentum,
                                                      spec.nesterov, spec.name == "topk");
  }
  return codec;
}

bool momentum_at_worker(const JobSpec& job) {
  if (job.momentum_at == "worker") return true;
  if (job.momentum_at == "server") return false;
  if (job.momentum_at != "auto") {
    throw ConfigError(
        fmt::format("--momentum_at {}: choose auto, worker or server", job.momentum_at));
  }
  if (job.psgd == "local_sgd" || job.codec == "gc" || job.codec == "ndc" || job.codec == "ccdc") {
    return false;
  }
  // asgd and ssp apply one worker's gradient per server update. Momentum on the server would put
  // its buffer inside the delay loop (a stale gradient re-applied for ~1/(1 - momentum) updates,
  // the implicit momentum of asynchrony added to the explicit one, Mitliagkas et al. 2016) and
  // decay it once per update instead of once per round. On the workers each buffer decays once
  // per that worker's step, as ssgd's does per round, and ssp with staleness 0 trains ssgd's model.
  if (job.psgd == "asgd" || job.psgd == "ssp") return true;
  return uses_error_feedback(CodecSpec{.name = job.codec, .error_feedback = job.error_feedback});
}

CodecSpec uplink_codec_spec(const JobSpec& job, std::uint64_t sender,
                            std::int64_t iterations_per_epoch,
                            std::vector<std::uint64_t> tensor_sizes) {
  // gc and ndc (psgd/gc.h) code in what they sum, and send it as exact fp32.
  // ccdc (psgd/ccdc.h) XORs exact fp32 bit patterns.
  if (job.codec == "gc" || job.codec == "ndc" || job.codec == "ccdc") {
    return CodecSpec{.error_feedback = "off"};
  }
  return CodecSpec{.name = job.codec,
                   .levels = job.codec_levels,
                   .ratio = job.codec_ratio,
                   .bucket = job.codec_bucket,
                   .error_feedback = job.error_feedback,
                   .seed = derive_seed(job.seed, 0xC0DEC000ULL + sender),
                   .momentum = momentum_at_worker(job) ? static_cast<float>(job.momentum) : 0.0f,
                   .nesterov = job.nesterov,
                   .segments = job.codec_scope == "tensor" ? std::move(tensor_sizes)
                                                           : std::vector<std::uint64_t>{},
                   .warmup_steps = static_cast<std::int64_t>(std::llround(
                       job.codec_warmup_epochs * static_cast<double>(iterations_per_epoch))),
                   .warmup_ratio = job.codec_warmup_ratio};
}

CodecSpec downlink_codec_spec(const JobSpec& job) {
  return CodecSpec{.name = job.server_codec, .error_feedback = "off"};
}

}  // namespace psgd
