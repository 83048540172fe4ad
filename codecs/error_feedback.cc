#include "codecs/error_feedback.h"

#include <cmath>

#include "core/error.h"
#include "core/state_io.h"

namespace psgd {

ErrorFeedbackCodec::ErrorFeedbackCodec(std::unique_ptr<Codec> inner) : inner_(std::move(inner)) {
  PSGD_CHECK(inner_ != nullptr, "error feedback needs an inner codec");
}

void ErrorFeedbackCodec::encode_into(std::span<const float> values, Payload& payload) {
  const std::size_t n = values.size();
  if (residual_.size() != n) residual_.assign(n, 0.0f);
  corrected_.resize(n);
  float* p = corrected_.data();
  float* e = residual_.data();
  for (std::size_t i = 0; i < n; ++i)
    p[i] = values[i] + e[i];
  inner_->encode_into(corrected_, payload);
  inner_->decode(payload, residual_);  // residual_ = D(C(p)) for the moment
  double lost = 0, total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    e[i] = p[i] - e[i];
    lost += static_cast<double>(e[i]) * e[i];
    total += static_cast<double>(p[i]) * p[i];
  }
  stats_.compression_error = total > 0 ? std::sqrt(lost / total) : 0.0;
}

void ErrorFeedbackCodec::decode_add(const Payload& payload, std::span<float> acc,
                                    float weight) const {
  inner_->decode_add(payload, acc, weight);
}

void ErrorFeedbackCodec::decode(const Payload& payload, std::span<float> out) const {
  inner_->decode(payload, out);
}

std::vector<std::uint8_t> ErrorFeedbackCodec::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put_bytes(inner_->state());
  w.put_floats(residual_);
  return out;
}

void ErrorFeedbackCodec::restore_state(std::span<const std::uint8_t> state) {
  if (state.empty()) {  // a fresh sender
    inner_->restore_state({});
    residual_.clear();
    return;
  }
  StateReader r(state, "error-feedback state");
  const auto inner = r.get_bytes();
  auto residual = r.get_floats();
  r.expect_end();
  inner_->restore_state(inner);
  residual_ = std::move(residual);
}

}  // namespace psgd
