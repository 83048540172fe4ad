#include "core/sgd.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/state_io.h"

namespace psgd {

FlatSgd::FlatSgd(SgdOptions options, std::size_t size) : options_(options) {
  if (options_.momentum != 0.0f) buffer_.assign(size, 0.0f);
}

namespace {

// One loop per case, on restrict-qualified pointers and with no member reads inside: g++ then
// vectorises every loop at -O2 (the cheap cost model refuses loops that need alias checks).
// Per element the arithmetic is torch.optim.SGD's, in its order, so results are bit-identical to
// the scalar loops.
void plain_step(float* __restrict p, const float* __restrict g, std::size_t n, float lr, float wd) {
  if (wd == 0.0f) {
    for (std::size_t i = 0; i < n; ++i)
      p[i] -= lr * g[i];
  } else {
    for (std::size_t i = 0; i < n; ++i)
      p[i] -= lr * (g[i] + wd * p[i]);
  }
}

template <bool kDecay, bool kFirst, bool kNesterov>
void momentum_loop(float* __restrict p, const float* __restrict g, float* __restrict buf,
                   std::size_t n, float lr, float wd, float mu) {
  for (std::size_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (kDecay) d += wd * p[i];
    float b = d;
    if constexpr (!kFirst) b = mu * buf[i] + d;
    buf[i] = b;
    if constexpr (kNesterov) {
      p[i] -= lr * (d + mu * b);
    } else {
      p[i] -= lr * b;
    }
  }
}

template <bool kDecay>
void momentum_step(float* p, const float* g, float* buf, std::size_t n, float lr, float wd,
                   float mu, bool first, bool nesterov) {
  if (first) {
    if (nesterov) return momentum_loop<kDecay, true, true>(p, g, buf, n, lr, wd, mu);
    return momentum_loop<kDecay, true, false>(p, g, buf, n, lr, wd, mu);
  }
  if (nesterov) return momentum_loop<kDecay, false, true>(p, g, buf, n, lr, wd, mu);
  momentum_loop<kDecay, false, false>(p, g, buf, n, lr, wd, mu);
}

}  // namespace

void FlatSgd::restore(std::span<const float> buffer, bool first_step) {
  PSGD_CHECK_EQ(buffer.size(), buffer_.size(), "momentum buffer of another size");
  buffer_.assign(buffer.begin(), buffer.end());
  first_step_ = first_step;
}

std::vector<std::uint8_t> FlatSgd::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put_bool(first_step_);
  w.put_floats(buffer_);
  return out;
}

void FlatSgd::restore_state(std::span<const std::uint8_t> state) {
  StateReader r(state, "optimiser state");
  const bool first = r.get_bool();
  auto buffer = r.get_floats(buffer_.size());
  r.expect_end();
  buffer_ = std::move(buffer);
  first_step_ = first;
}

void FlatSgd::step(std::span<float> params, std::span<const float> grad) {
  PSGD_CHECK_EQ(params.size(), grad.size(), "parameter and gradient sizes differ");
  const SgdOptions o = options_;
  const std::size_t n = params.size();
  if (o.momentum == 0.0f) {
    plain_step(params.data(), grad.data(), n, o.learning_rate, o.weight_decay);
    return;
  }
  PSGD_CHECK_EQ(buffer_.size(), n, "momentum buffer was sized for another model");
  auto* step = o.weight_decay == 0.0f ? &momentum_step<false> : &momentum_step<true>;
  step(params.data(), grad.data(), buffer_.data(), n, o.learning_rate, o.weight_decay, o.momentum,
       first_step_, o.nesterov);
  first_step_ = false;
}

OptimizerSpec sgd_spec(const SgdOptions& o) {
  return OptimizerSpec{.name = "sgd",
                       .schedule = LrSchedule(o.learning_rate),
                       .momentum = o.momentum,
                       .weight_decay = o.weight_decay,
                       .nesterov = o.nesterov};
}

SgdOptimizer::SgdOptimizer(const OptimizerSpec& spec, std::size_t size) : Optimizer(spec, size) {
  if (spec_.momentum != 0.0) buffer_.assign(size, 0.0f);
}

void SgdOptimizer::apply(std::span<float> params, std::span<const float> grad, double lr) {
  const auto rate = static_cast<float>(lr);
  const auto wd = static_cast<float>(spec_.weight_decay);
  const std::size_t n = params.size();
  if (buffer_.empty()) {
    plain_step(params.data(), grad.data(), n, rate, wd);
    return;
  }
  auto* step = wd == 0.0f ? &momentum_step<false> : &momentum_step<true>;
  step(params.data(), grad.data(), buffer_.data(), n, rate, wd, static_cast<float>(spec_.momentum),
       steps_ == 1, spec_.nesterov);
}

}  // namespace psgd
