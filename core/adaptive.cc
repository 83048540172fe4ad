// Built with -fno-math-errno (core/CMakeLists.txt) so that the square roots vectorise; sqrt is
// correctly rounded either way, so the results do not change.
#include "core/adaptive.h"

#include <algorithm>
#include <cmath>

namespace psgd {
namespace {

// The element loops take restrict-qualified pointers and scalars only, so g++ vectorises them
// (core/sgd.cc says why). Per element the arithmetic is torch's, in torch's order.
template <bool kDecoupled, bool kDecay, bool kAmsgrad>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m,
               float* __restrict v, float* __restrict v_max, std::size_t n, float wd, float keep,
               float b1, float omb1, float b2, float omb2, float bc2_sqrt, float eps,
               float neg_step) {
  for (std::size_t i = 0; i < n; ++i) {
    float gi = g[i];
    if constexpr (kDecoupled) p[i] = p[i] * keep;  // p.mul_(1 - lr * wd)
    if constexpr (kDecay) gi = gi + wd * p[i];     // grad.add(p, wd)
    const float mi = m[i] * b1 + omb1 * gi;        // m.mul_(b1).add_(g, 1 - b1)
    const float vi = v[i] * b2 + omb2 * gi * gi;   // v.mul_(b2).addcmul_(g, g, 1 - b2)
    m[i] = mi;
    v[i] = vi;
    float second = vi;
    if constexpr (kAmsgrad) {
      second = std::max(v_max[i], vi);
      v_max[i] = second;
    }
    const float denom = std::sqrt(second) / bc2_sqrt + eps;  // (v.sqrt() / sqrt(bc2)).add_(eps)
    p[i] = p[i] + neg_step * mi / denom;                     // p.addcdiv_(m, denom, -step_size)
  }
}

}  // namespace

AdamOptimizer::AdamOptimizer(const OptimizerSpec& spec, std::size_t size, bool decoupled)
    : Optimizer(spec, size), decoupled_(decoupled), m_(size, 0.0f), v_(size, 0.0f) {
  if (spec_.amsgrad) v_max_.assign(size, 0.0f);
}

void AdamOptimizer::apply(std::span<float> params, std::span<const float> grad, double lr) {
  const OptimizerSpec& s = spec_;
  const double t = static_cast<double>(steps_);
  const double bc1 = 1 - std::pow(s.beta1, t);
  const double bc2 = 1 - std::pow(s.beta2, t);
  const auto wd = static_cast<float>(s.weight_decay);
  const auto keep = static_cast<float>(1 - lr * s.weight_decay);
  const auto b1 = static_cast<float>(s.beta1), omb1 = static_cast<float>(1 - s.beta1);
  const auto b2 = static_cast<float>(s.beta2), omb2 = static_cast<float>(1 - s.beta2);
  const auto bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const auto eps = static_cast<float>(s.eps);
  const auto neg_step = static_cast<float>(-(lr / bc1));
  // AdamW shrinks the parameters (decoupled decay); Adam adds the decay to the gradient.
  const bool decay = s.weight_decay != 0;
  auto* loop = &adam_loop<false, false, false>;
  if (decoupled_ && decay) {
    loop = s.amsgrad ? &adam_loop<true, false, true> : &adam_loop<true, false, false>;
  } else if (decay) {
    loop = s.amsgrad ? &adam_loop<false, true, true> : &adam_loop<false, true, false>;
  } else if (s.amsgrad) {
    loop = &adam_loop<false, false, true>;
  }
  loop(params.data(), grad.data(), m_.data(), v_.data(), v_max_.data(), params.size(), wd, keep, b1,
       omb1, b2, omb2, bc2_sqrt, eps, neg_step);
}

AdagradOptimizer::AdagradOptimizer(const OptimizerSpec& spec, std::size_t size)
    : Optimizer(spec, size), sum_(size, static_cast<float>(spec.initial_accumulator_value)) {}

void AdagradOptimizer::apply(std::span<float> params, std::span<const float> grad, double lr) {
  const OptimizerSpec& s = spec_;
  const double clr = lr / (1 + static_cast<double>(steps_ - 1) * s.lr_decay);
  const auto neg = static_cast<float>(-clr);
  const auto wd = static_cast<float>(s.weight_decay);
  const auto eps = static_cast<float>(s.eps);
  float* __restrict p = params.data();
  const float* __restrict g = grad.data();
  float* __restrict sum = sum_.data();
  const std::size_t n = params.size();
  if (wd != 0.0f) {
    for (std::size_t i = 0; i < n; ++i) {
      const float gi = g[i] + wd * p[i];
      const float si = sum[i] + 1.0f * gi * gi;  // sum.addcmul_(g, g, 1.0)
      sum[i] = si;
      p[i] = p[i] + neg * gi / (std::sqrt(si) + eps);
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float si = sum[i] + 1.0f * gi * gi;
      sum[i] = si;
      p[i] = p[i] + neg * gi / (std::sqrt(si) + eps);
    }
  }
}

RmspropOptimizer::RmspropOptimizer(const OptimizerSpec& spec, std::size_t size)
    : Optimizer(spec, size), square_avg_(size, 0.0f) {
  if (spec_.centered) grad_avg_.assign(size, 0.0f);
}

void RmspropOptimizer::apply(std::span<float> params, std::span<const float> grad, double lr) {
  const OptimizerSpec& s = spec_;
  const auto neg = static_cast<float>(-lr);
  const auto wd = static_cast<float>(s.weight_decay);
  const auto alpha = static_cast<float>(s.alpha), oma = static_cast<float>(1 - s.alpha);
  const auto eps = static_cast<float>(s.eps);
  float* __restrict p = params.data();
  const float* __restrict g = grad.data();
  float* __restrict sq = square_avg_.data();
  const std::size_t n = params.size();
  if (s.centered) {
    float* __restrict ga = grad_avg_.data();
    for (std::size_t i = 0; i < n; ++i) {
      const float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
      const float a = sq[i] * alpha + oma * gi * gi;
      const float c = ga[i] * alpha + oma * gi;  // grad_avg.mul_(alpha).add_(g, 1 - alpha)
      sq[i] = a;
      ga[i] = c;
      const float avg =
          std::sqrt(a + -1.0f * c * c) + eps;  // a.addcmul(c, c, -1).sqrt_().add_(eps)
      p[i] = p[i] + neg * gi / avg;
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
    const float a = sq[i] * alpha + oma * gi * gi;
    sq[i] = a;
    p[i] = p[i] + neg * gi / (std::sqrt(a) + eps);
  }
}

}  // namespace psgd
