#include "codecs/codec_table.h"

#include <algorithm>

#include "codecs/bf16.h"
#include "codecs/factory.h"
#include "codecs/fp16.h"
#include "codecs/plain.h"
#include "codecs/qsgd.h"
#include "codecs/randk.h"
#include "codecs/sign.h"
#include "codecs/topk.h"

namespace psgd {
namespace {

constexpr CodecEntry kCodecs[] = {
    {.name = "plain",
     .summary = "exact fp32, 4 bytes per value (the baseline)",
     .dense = true,
     .make = [](const CodecSpec&, std::uint64_t) -> std::unique_ptr<Codec> {
       return std::make_unique<PlainCodec>();
     }},
    {.name = "fp16",
     .summary = "IEEE half precision, 2 bytes per value, round to nearest even",
     .dense = true,
     .make = [](const CodecSpec&, std::uint64_t) -> std::unique_ptr<Codec> {
       return std::make_unique<Fp16Codec>();
     }},
    {.name = "bf16",
     .summary = "bfloat16 (fp32's exponent, 8-bit significand), 2 bytes per value",
     .dense = true,
     .make = [](const CodecSpec&, std::uint64_t) -> std::unique_ptr<Codec> {
       return std::make_unique<Bf16Codec>();
     }},
    {.name = "qsgd",
     .summary = "QSGD stochastic quantisation (Alistarh et al. 2017), --codec_levels s per "
                "bucket of --codec_bucket values (default 512), unbiased",
     .options = kUsesLevels | kUsesBucket,
     .default_bucket = 512,
     .make = [](const CodecSpec& spec, std::uint64_t bucket) -> std::unique_ptr<Codec> {
       return std::make_unique<QsgdCodec>(
           QsgdOptions{.levels = spec.levels, .bucket = bucket, .seed = spec.seed});
     }},
    {.name = "sign",
     .summary = "scaled sign of EF-SGD (Karimireddy et al. 2019), 1 bit per value and one scale "
                "per --codec_bucket values (default: one for the whole gradient)",
     .error_feedback_by_default = true,
     .options = kUsesBucket,
     .default_bucket = 0,
     .make = [](const CodecSpec&, std::uint64_t bucket) -> std::unique_ptr<Codec> {
       return std::make_unique<SignCodec>(bucket);
     }},
    {.name = "topk",
     .summary = "top-k sparsification (Aji & Heafield 2017): the --codec_ratio largest values "
                "and their indices; per tensor (--codec_scope) and DGC's warm-up on request",
     .error_feedback_by_default = true,
     .options = kUsesRatio | kUsesScope,
     .make = [](const CodecSpec& spec, std::uint64_t) -> std::unique_ptr<Codec> {
       return std::make_unique<TopkCodec>(TopkOptions{.ratio = spec.ratio,
                                                      .segments = spec.segments,
                                                      .warmup_steps = spec.warmup_steps,
                                                      .warmup_ratio = spec.warmup_ratio});
     }},
    {.name = "randk",
     .summary = "random-k sparsification (Stich et al. 2018): --codec_ratio of the values, "
                "indices drawn from a seed both ends share (not sent)",
     .error_feedback_by_default = true,
     .options = kUsesRatio,
     .make = [](const CodecSpec& spec, std::uint64_t) -> std::unique_ptr<Codec> {
       return std::make_unique<RandkCodec>(spec.ratio, spec.seed);
     }},
};

}  // namespace

std::span<const CodecEntry> codec_table() {
  return kCodecs;
}

const CodecEntry* find_codec(std::string_view name) {
  for (const CodecEntry& e : kCodecs)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<std::string> codec_names() {
  std::vector<std::string> v;
  for (const CodecEntry& e : kCodecs)
    v.emplace_back(e.name);
  return v;
}

std::vector<std::string> dense_codec_names() {
  std::vector<std::string> v;
  for (const CodecEntry& e : kCodecs)
    if (e.dense) v.emplace_back(e.name);
  return v;
}

}  // namespace psgd
