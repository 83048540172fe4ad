#include "psgd/delay_compensation.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace psgd {

DelayCompensation::DelayCompensation(int node_count, std::size_t size,
                                     DelayCompensationOptions options)
    : options_(options), size_(size), gradient_(size, 0.0f) {
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

void DelayCompensation::restart(NodeId worker) {
  PSGD_CHECK(worker >= 0 && static_cast<std::size_t>(worker) < workers_.size(),
             "delay compensation: no worker {}", worker);
  PerWorker& w = workers_[static_cast<std::size_t>(worker)];
  std::fill(w.previous.begin(), w.previous.end(), 0.0f);
  std::fill(w.carried.begin(), w.carried.end(), 0.0f);
}

void DelayCompensation::compensate(NodeId worker, std::span<float> update,
                                   std::span<const float> current) {
  PSGD_CHECK(worker >= 0 && static_cast<std::size_t>(worker) < workers_.size() &&
                 update.size() == size_ && current.size() == size_,
             "delay compensation: update of {} values from worker {}", update.size(), worker);
  PerWorker& pw = workers_[static_cast<std::size_t>(worker)];
  const std::size_t n = size_;
  const float m = options_.momentum;
  float* d = update.data();
  float* g = gradient_.data();

  // 1. The worker's fresh gradient ĝ (header comment).
  if (m == 0.0f) {
    std::copy(update.begin(), update.end(), gradient_.begin());
  } else if (!options_.nesterov) {
    float* u = pw.previous.data();
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = d[i] - m * u[i];
      u[i] = d[i];
    }
  } else {
    float* u = pw.previous.data();
    const float inv = 1.0f / (1.0f + m);
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = (d[i] - m * m * u[i]) * inv;
      u[i] = m * u[i] + g[i];
    }
  }

  // 2. c = λ ⊙ ĝ ⊙ ĝ ⊙ (w − w_stale), into gradient_.
  const float* w = current.data();
  const float* s = pw.stale.data();
  if (options_.adaptive) {
    const float beta = options_.mean_square_decay;
    float* ms = mean_square_.data();
    for (std::size_t i = 0; i < n; ++i) {
      const float gg = g[i] * g[i];
      ms[i] = beta * ms[i] + (1.0f - beta) * gg;
      g[i] = options_.lambda / std::sqrt(ms[i] + options_.epsilon) * gg * (w[i] - s[i]);
    }
  } else {
    for (std::size_t i = 0; i < n; ++i)
      g[i] = options_.lambda * g[i] * g[i] * (w[i] - s[i]);
  }

  // 3. Add the correction, carried through the worker's momentum.
  if (m == 0.0f) {
    for (std::size_t i = 0; i < n; ++i)
      d[i] += g[i];
  } else {
    float* c = pw.carried.data();
    for (std::size_t i = 0; i < n; ++i) {
      c[i] = m * c[i] + g[i];
      d[i] += options_.nesterov ? g[i] + m * c[i] : c[i];
    }
  }
}

}  // namespace psgd
