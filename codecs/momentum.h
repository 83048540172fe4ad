#pragma once
// MomentumCorrectionCodec: momentum applied by the sender before compression — the "momentum
// correction" of Deep Gradient Compression (Lin et al. 2018, §3.2), and the worker-side momentum
// that EF-SGD's analysis assumes when the server runs plain SGD (Karimireddy et al. 2019, §6).
//
// Each encode(g) updates the sender's momentum buffer u = m·u + g (u = g on the first call, as
// torch.optim.SGD) and hands u (Nesterov: g + m·u) to the inner codec, typically an
// ErrorFeedbackCodec, whose residual then accumulates v = e + u exactly as DGC's local gradient
// accumulation. The receiver applies the decoded mean with SGD and NO momentum of its own.
//
// Why: with error feedback, the residual re-enters later gradients; if the server also applies
// momentum 0.9 to those gradients, every coordinate the codec delays is amplified up to 1/(1−m)
// times more once it is finally sent, on top of the momentum it already received: stale mass is
// counted twice. Moving the momentum before the compressor makes the delayed quantity the
// momentum itself, which is what the residual then conserves.
//
// Property: with an exact inner codec and synchronous rounds, the mean over n workers of their
// buffers equals the server's momentum buffer of the mean gradient (momentum is linear), so
// --momentum_at worker and --momentum_at server give the same model up to float rounding.
// Weight decay stays on the server (it needs the parameters, which a codec does not see).
//
// Momentum factor masking (DGC §3.3, `mask_sent`, on for topk): the buffer's coordinates
// that the inner codec sent this step are zeroed, as DGC does with u and the accumulator (error
// feedback already leaves a zero residual there), so a coordinate's momentum is not sent again
// when it is delayed mass, only fresh gradient.
//
// The wire format is the inner codec's; receivers decode with the inner codec.
#include <cstdint>
#include <memory>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

class MomentumCorrectionCodec final : public Codec {
 public:
  MomentumCorrectionCodec(std::unique_ptr<Codec> inner, float momentum, bool nesterov = false,
                          bool mask_sent = false);
  std::string_view name() const override { return inner_->name(); }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
  CodecStats last_stats() const override { return stats_; }
  // The inner codec's state, the buffer and the encode count.
  std::vector<std::uint8_t> state() const override;
  void restore_state(std::span<const std::uint8_t> state) override;

  const Codec& inner() const { return *inner_; }
  std::span<const float> momentum_buffer() const { return buffer_; }

 private:
  static constexpr std::int64_t kErrorSampleEvery = 10;

  std::unique_ptr<Codec> inner_;
  float momentum_;
  bool nesterov_;
  bool mask_sent_;
  std::vector<float> buffer_;     // u
  std::vector<float> direction_;  // what the inner codec encodes (u, or g + m·u)
  std::vector<float> scratch_;    // decoded direction (compression error, masking)
  std::int64_t encodes_ = 0;
  CodecStats stats_;
};

}  // namespace psgd
