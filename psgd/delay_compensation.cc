#include "psgd/delay_compensation.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/state_io.h"

namespace psgd {

DelayCompensation::DelayCompensation(int node_count, std::size_t size,
                                     DelayCompensationOptions options)
    : options_(options), size_(size) {
  PSGD_CHECK(node_count > 0, "delay compensation for {} workers", node_count);
  PSGD_CHECK(options_.lambda > 0.0f && std::isfinite(options_.lambda),
             "delay compensation with lambda {}", options_.lambda);
  PSGD_CHECK(options_.momentum >= 0.0f && options_.momentum < 1.0f,
             "delay compensation with momentum {}", options_.momentum);
  workers_.resize(static_cast<std::size_t>(node_count));
  for (PerWorker& w : workers_) {
    w.stale.assign(size_, 0.0f);
    if (options_.momentum > 0.0f) {
      w.previous.assign(size_, 0.0f);
      w.carried.assign(size_, 0.0f);
    }
  }
  if (options_.adaptive) mean_square_.assign(size_, 0.0f);
}

void DelayCompensation::sent(NodeId worker, std::span<const float> params) {
  PSGD_CHECK(
      worker >= 0 && static_cast<std::size_t>(worker) < workers_.size() && params.size() == size_,
      "delay compensation: {} parameters sent to worker {}", params.size(), worker);
  auto& stale = workers_[static_cast<std::size_t>(worker)].stale;
  std::copy(params.begin(), params.end(), stale.begin());
}

std::span<float> DelayCompensation::sent_buffer(NodeId worker) {
  PSGD_CHECK(worker >= 0 && static_cast<std::size_t>(worker) < workers_.size(),
             "delay compensation: no worker {}", worker);
  return workers_[static_cast<std::size_t>(worker)].stale;
}

std::vector<std::uint8_t> DelayCompensation::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put<std::uint64_t>(workers_.size());
  w.put_floats(mean_square_);
  for (const PerWorker& pw : workers_) {
    w.put_floats(pw.previous);
    w.put_floats(pw.carried);
  }
  return out;
}

void DelayCompensation::restore_state(std::span<const std::uint8_t> state) {
  StateReader r(state, "delay compensation state");
  if (r.get<std::uint64_t>() != workers_.size()) r.fail("another number of workers");
  auto mean_square = r.get_floats(mean_square_.size());
  std::vector<PerWorker> restored(workers_.size());
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    restored[w].previous = r.get_floats(workers_[w].previous.size());
    restored[w].carried = r.get_floats(workers_[w].carried.size());
  }
  r.expect_end();
  mean_square_ = std::move(mean_square);
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    workers_[w].previous = std::move(restored[w].previous);
    workers_[w].carried = std::move(restored[w].carried);
  }
}

void DelayCompensation::restart(NodeId worker) {
  PSGD_CHECK(worker >= 0 && static_cast<std::size_t>(worker) < workers_.size(),
             "delay compensation: no worker {}", worker);
  PerWorker& w = workers_[static_cast<std::size_t>(worker)];
  std::fill(w.previous.begin(), w.previous.end(), 0.0f);
  std::fill(w.carried.begin(), w.carried.end(), 0.0f);
}

namespace {

// One pass over the vectors per update (they are model-sized and the server is busy): ĝ, then
// c = λ ⊙ ĝ ⊙ ĝ ⊙ (w − w_stale), then the direction, per element (header comment).
template <bool kMomentum, bool kNesterov, bool kAdaptive>
void compensate_loop(float* __restrict d, float* __restrict u, float* __restrict carried,
                     float* __restrict ms, const float* __restrict w, const float* __restrict s,
                     std::size_t n, const DelayCompensationOptions& o) {
  const float m = o.momentum, lambda = o.lambda, beta = o.mean_square_decay, eps = o.epsilon;
  const float inv = 1.0f / (1.0f + m);
  for (std::size_t i = 0; i < n; ++i) {
    // 1. The worker's fresh gradient ĝ.
    float g = d[i];
    if constexpr (kMomentum && !kNesterov) {
      g = d[i] - m * u[i];
      u[i] = d[i];
    } else if constexpr (kNesterov) {
      g = (d[i] - m * m * u[i]) * inv;
      u[i] = m * u[i] + g;
    }
    // 2. The correction c.
    const float gg = g * g;
    float c;
    if constexpr (kAdaptive) {
      ms[i] = beta * ms[i] + (1.0f - beta) * gg;
      c = lambda / std::sqrt(ms[i] + eps) * gg * (w[i] - s[i]);
    } else {
      c = lambda * g * g * (w[i] - s[i]);
    }
    // 3. Added, carried through the worker's momentum.
    if constexpr (kMomentum) {
      carried[i] = m * carried[i] + c;
      d[i] += kNesterov ? c + m * carried[i] : carried[i];
    } else {
      d[i] += c;
    }
  }
}

template <bool kMomentum, bool kNesterov>
void compensate_with(bool adaptive, float* d, float* u, float* carried, float* ms, const float* w,
                     const float* s, std::size_t n, const DelayCompensationOptions& o) {
  if (adaptive) return compensate_loop<kMomentum, kNesterov, true>(d, u, carried, ms, w, s, n, o);
  compensate_loop<kMomentum, kNesterov, false>(d, u, carried, ms, w, s, n, o);
}

}  // namespace

void DelayCompensation::compensate(NodeId worker, std::span<float> update,
                                   std::span<const float> current) {
  PSGD_CHECK(worker >= 0 && static_cast<std::size_t>(worker) < workers_.size() &&
                 update.size() == size_ && current.size() == size_,
             "delay compensation: update of {} values from worker {}", update.size(), worker);
  PerWorker& pw = workers_[static_cast<std::size_t>(worker)];
  float* d = update.data();
  float* u = pw.previous.data();
  float* c = pw.carried.data();
  float* ms = mean_square_.data();
  const float* w = current.data();
  const float* s = pw.stale.data();
  const bool adaptive = options_.adaptive;
  if (options_.momentum == 0.0f) {
    compensate_with<false, false>(adaptive, d, u, c, ms, w, s, size_, options_);
  } else if (!options_.nesterov) {
    compensate_with<true, false>(adaptive, d, u, c, ms, w, s, size_, options_);
  } else {
    compensate_with<true, true>(adaptive, d, u, c, ms, w, s, size_, options_);
  }
}

}  // namespace psgd
