#include "psgd/allreduce_compression.h"

#include <algorithm>

#include "codecs/codec_table.h"

namespace psgd {
namespace {

// fp32, exact: the sum, then the mean (the same operations as before compression existed, so a
// plain allreduce and its resume stay bit-identical).
class PlainAllreduce final : public AllreduceCompression {
 public:
  explicit PlainAllreduce(int world) : world_(world) {}
  int rounds() const override { return 1; }
  bool set_world(int world) override {
    world_ = world;
    return true;
  }
  std::span<float> round_buffer(int, std::span<const float> gradient) override {
    sum_.assign(gradient.begin(), gradient.end());
    return sum_;
  }
  bool bucketed() const override { return true; }
  std::span<float> bucket_buffer(std::span<const float> gradient, std::size_t begin,
                                 std::size_t end) override {
    sum_.resize(gradient.size());
    std::copy(gradient.begin() + static_cast<std::ptrdiff_t>(begin),
              gradient.begin() + static_cast<std::ptrdiff_t>(end),
              sum_.begin() + static_cast<std::ptrdiff_t>(begin));
    return sum_;
  }
  void finish(std::span<float> update) override {
    const float scale = 1.0f / static_cast<float>(world_);
    for (std::size_t i = 0; i < sum_.size(); ++i)
      update[i] = sum_[i] * scale;
  }

 private:
  int world_;
  std::vector<float> sum_;
};

// fp16 on the wire: divided by n first (fp16_compress_hook's order: the sum of means cannot
// overflow where the mean does not), summed by a ring that rounds what it sends to fp16.
class Fp16Allreduce final : public AllreduceCompression {
 public:
  explicit Fp16Allreduce(int world) : world_(world) {}
  int rounds() const override { return 1; }
  bool half() const override { return true; }
  std::span<float> round_buffer(int, std::span<const float> gradient) override {
    return bucket_buffer(gradient, 0, gradient.size());
  }
  bool bucketed() const override { return true; }
  std::span<float> bucket_buffer(std::span<const float> gradient, std::size_t begin,
                                 std::size_t end) override {
    const float scale = 1.0f / static_cast<float>(world_);
    sum_.resize(gradient.size());
    for (std::size_t i = begin; i < end; ++i)
      sum_[i] = gradient[i] * scale;
    return sum_;
  }
  void finish(std::span<float> update) override {
    std::copy(sum_.begin(), sum_.end(), update.begin());
  }

 private:
  int world_;
  std::vector<float> sum_;
};

class PowerSgdAllreduce final : public AllreduceCompression {
 public:
  explicit PowerSgdAllreduce(const AllreduceCompressionSpec& spec)
      : power_(spec.tensors, spec.world, PowerSgdOptions{.rank = spec.rank, .seed = spec.seed}) {}
  int rounds() const override { return PowerSgd::kRounds; }
  std::span<float> round_buffer(int k, std::span<const float> gradient) override {
    return k == 0 ? power_.first(gradient) : power_.second();
  }
  void finish(std::span<float> update) override { power_.finish(update); }
  std::vector<std::uint8_t> snapshot() const override { return power_.snapshot(); }
  void restore(std::span<const std::uint8_t> state) override { power_.restore(state); }

 private:
  PowerSgd power_;
};

constexpr AllreduceCompressionEntry kCompressions[] = {
    {.name = "plain",
     .summary = "exact fp32 sums",
     .ddp_hook = "allreduce_hook (DDP's default)",
     .shrinks = true,
     .buckets = true,
     .make = [](const AllreduceCompressionSpec& spec) -> std::unique_ptr<AllreduceCompression> {
       return std::make_unique<PlainAllreduce>(spec.world);
     }},
    {.name = "fp16",
     .summary = "the ring carries IEEE half precision (half the bytes), sums in fp32",
     .ddp_hook = "fp16_compress_hook",
     .buckets = true,
     .make = [](const AllreduceCompressionSpec& spec) -> std::unique_ptr<AllreduceCompression> {
       return std::make_unique<Fp16Allreduce>(spec.world);
     }},
    {.name = "powersgd",
     .summary = "PowerSGD (Vogels et al. 2019): rank --codec_rank factors of each weight matrix, "
                "error feedback, warm-started Q; 1-D and small tensors exact",
     .ddp_hook = "powerSGD_hook",
     .options = kUsesRank,
     .needs_tensors = true,
     .make = [](const AllreduceCompressionSpec& spec) -> std::unique_ptr<AllreduceCompression> {
       return std::make_unique<PowerSgdAllreduce>(spec);
     }},
};

}  // namespace

std::span<const AllreduceCompressionEntry> allreduce_compression_table() {
  return kCompressions;
}

const AllreduceCompressionEntry* find_allreduce_compression(std::string_view codec) {
  for (const AllreduceCompressionEntry& e : kCompressions)
    if (e.name == codec) return &e;
  return nullptr;
}

std::vector<std::string> allreduce_compression_names() {
  std::vector<std::string> v;
  for (const AllreduceCompressionEntry& e : kCompressions)
    v.emplace_back(e.name);
  return v;
}

}  // namespace psgd
