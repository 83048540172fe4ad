#include "core/sgd.h"

#include "core/error.h"

namespace psgd {

FlatSgd::FlatSgd(SgdOptions options, std::size_t size) : options_(options) {
  if (options_.momentum != 0.0f) buffer_.assign(size, 0.0f);
}

void FlatSgd::restore(std::span<const float> buffer, bool first_step) {
  PSGD_CHECK_EQ(buffer.size(), buffer_.size(), "momentum buffer of another size");
  buffer_.assign(buffer.begin(), buffer.end());
  first_step_ = first_step;
}

void FlatSgd::step(std::span<float> params, std::span<const float> grad) {
  PSGD_CHECK_EQ(params.size(), grad.size(), "parameter and gradient sizes differ");
  const float lr = options_.learning_rate;
  const float wd = options_.weight_decay;
  const float mu = options_.momentum;
  const std::size_t n = params.size();
  if (mu == 0.0f) {
    for (std::size_t i = 0; i < n; ++i)
      params[i] -= lr * (grad[i] + wd * params[i]);
    return;
  }
  PSGD_CHECK_EQ(buffer_.size(), n, "momentum buffer was sized for another model");
  float* buf = buffer_.data();
  for (std::size_t i = 0; i < n; ++i) {
    const float d = grad[i] + wd * params[i];
    buf[i] = first_step_ ? d : mu * buf[i] + d;
    params[i] -= lr * (options_.nesterov ? d + mu * buf[i] : buf[i]);
  }
  first_step_ = false;
}

}  // namespace psgd
