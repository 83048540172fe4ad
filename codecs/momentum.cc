#include "codecs/momentum.h"

#include "codecs/payload_io.h"
#include "core/error.h"
#include "core/state_io.h"

namespace psgd {

MomentumCorrectionCodec::MomentumCorrectionCodec(std::unique_ptr<Codec> inner, float momentum,
                                                 bool nesterov, bool mask_sent)
    : inner_(std::move(inner)), momentum_(momentum), nesterov_(nesterov), mask_sent_(mask_sent) {
  PSGD_CHECK(inner_ != nullptr, "momentum correction needs an inner codec");
  PSGD_CHECK(momentum_ >= 0.0f && momentum_ < 1.0f, "momentum {} outside [0, 1)", momentum_);
}

void MomentumCorrectionCodec::encode_into(std::span<const float> values, Payload& payload) {
  const std::size_t n = values.size();
  const float m = momentum_;
  if (buffer_.size() != n) {
    buffer_.assign(values.begin(), values.end());
  } else {
    float* u = buffer_.data();
    for (std::size_t i = 0; i < n; ++i)
      u[i] = m * u[i] + values[i];
  }
  std::span<const float> direction = buffer_;
  if (nesterov_) {
    direction_.resize(n);
    for (std::size_t i = 0; i < n; ++i)
      direction_[i] = values[i] + m * buffer_[i];
    direction = direction_;
  }
  inner_->encode_into(direction, payload);
  stats_ = inner_->last_stats();
  // The sender's generic fallback would compare g with D(C(u)); measure against u here instead.
  const bool measure = stats_.compression_error < 0 && encodes_ % kErrorSampleEvery == 0;
  if (measure || mask_sent_) {
    scratch_.resize(n);
    inner_->decode(payload, scratch_);
  }
  if (measure) stats_.compression_error = relative_error(direction, scratch_);
  if (mask_sent_) {
    float* u = buffer_.data();
    const float* sent = scratch_.data();
    for (std::size_t i = 0; i < n; ++i)
      u[i] = sent[i] != 0.0f ? 0.0f : u[i];
  }
  ++encodes_;
}

void MomentumCorrectionCodec::decode_add(const Payload& payload, std::span<float> acc,
                                         float weight) const {
  inner_->decode_add(payload, acc, weight);
}

void MomentumCorrectionCodec::decode(const Payload& payload, std::span<float> out) const {
  inner_->decode(payload, out);
}

std::vector<std::uint8_t> MomentumCorrectionCodec::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put_bytes(inner_->state());
  w.put_floats(buffer_);
  w.put<std::int64_t>(encodes_);
  return out;
}

void MomentumCorrectionCodec::restore_state(std::span<const std::uint8_t> state) {
  if (state.empty()) {
    inner_->restore_state({});
    buffer_.clear();
    encodes_ = 0;
    return;
  }
  StateReader r(state, "momentum-correction state");
  const auto inner = r.get_bytes();
  auto buffer = r.get_floats();
  const auto encodes = r.get<std::int64_t>();
  r.expect_end();
  if (encodes < 0) r.fail("a negative encode count");
  inner_->restore_state(inner);
  buffer_ = std::move(buffer);
  encodes_ = encodes;
}

}  // namespace psgd
