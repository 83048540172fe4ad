#pragma once
// ErrorFeedbackCodec: error feedback (EF-SGD, Karimireddy et al. 2019, "Error Feedback Fixes
// SignSGD and other Gradient Compression Schemes", Algorithm 2; Seide et al. 2014 for 1-bit SGD;
// the ErrorFeedback compressor decorator of BytePS) around any codec.
//
// Keeps the residual e (zero at first) of what compression lost and adds it back before the next
// compression:  p = g + e;  payload = inner.encode(p);  e = p − D(payload).
// So g + e_old = D(payload) + e_new holds at every step (up to float rounding), and nothing the
// codec drops is lost for good, only delayed. The wire format is the inner codec's, unchanged;
// receivers decode with the inner codec. last_stats().compression_error is ‖e_new‖ / ‖p‖, the
// inner codec's relative error on what it was given, which the decorator knows at no extra cost.
//
// A residual belongs to one sender and one vector length; encoding a vector of another length
// starts a fresh residual.
#include <memory>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

class ErrorFeedbackCodec final : public Codec {
 public:
  explicit ErrorFeedbackCodec(std::unique_ptr<Codec> inner);
  std::string_view name() const override { return inner_->name(); }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
  CodecStats last_stats() const override { return stats_; }
  // The inner codec's state and the residual.
  std::vector<std::uint8_t> state() const override;
  void restore_state(std::span<const std::uint8_t> state) override;

  const Codec& inner() const { return *inner_; }
  std::span<const float> residual() const { return residual_; }

 private:
  std::unique_ptr<Codec> inner_;
  std::vector<float> residual_;
  std::vector<float> corrected_;  // p = g + e
  CodecStats stats_;
};

}  // namespace psgd
