#pragma once
// Delay compensation for asgd (--delay_compensation LAMBDA): DC-ASGD, Zheng et al., ICML 2017,
// "Asynchronous Stochastic Gradient Descent with Delay Compensation".
//
// A worker computes its gradient g on the parameters w_stale it was last sent; by the time g
// arrives, other workers have moved the model to w. The first-order Taylor expansion
// g(w) ≈ g(w_stale) + H (w − w_stale), with the Hessian H approximated by the cheap outer product
// g gᵀ (the Fisher information, the expected Hessian of a log-likelihood loss) and kept to its
// diagonal, gives the compensated gradient
//
//     g + λ · g ⊙ g ⊙ (w − w_stale)
//
// which the server applies instead of g (the paper's eq. 10 and Algorithm 2). Two variants:
// - adaptive (DC-ASGD-a, the default, which the paper recommends): λ is a per-coordinate
//   λ0 / sqrt(MeanSquare + 1e-7), MeanSquare ← 0.95 · MeanSquare + 0.05 · g ⊙ g over every
//   gradient the server receives, updated before it is used (the paper's §5 settings). Scaling by
//   the RMS of the gradient makes λ0 independent of the gradient's scale; the paper uses λ0 = 2.
// - constant (DC-ASGD-c): λ as given; the paper uses 0.04. g ⊙ g is the square of a MINI-BATCH
//   gradient, which is ~batch times smaller than the per-sample Fisher the Taylor argument wants,
//   so the useful λ depends on model, data and batch size.
// The server remembers per worker the parameters that worker was last sent, as it will decode
// them (a lossy --server_codec included): that is the w_stale its next gradient was computed on.
// With one worker (staleness 0) and exact parameters w = w_stale and the compensation is zero.
//
// Worker-side momentum (--momentum_at worker, the default for asgd; codecs/momentum.h). The
// worker then sends not g but its momentum buffer u_t = m·u_{t−1} + g_t (Nesterov: g_t + m·u_t).
// Compensating u as if it were a gradient would be wrong twice: u ⊙ u overestimates the
// Hessian ~1/(1−m)² = 100-fold, and u holds gradients that were each already stale when they
// arrived; momentum re-applies old gradients by design, sequential momentum SGD does the same,
// that is not the delay DC corrects. What is principled is to compensate each gradient ONCE, when
// it arrives, to the parameters current then, and let the compensated gradient flow through the
// worker's momentum as the raw one does. Momentum is linear, so had the worker known the
// correction c_t it would have sent u_t + C_t with C_t = m·C_{t−1} + c_t (Nesterov: the direction
// gains c_t + m·C_t). The server therefore
//   1. recovers the worker's fresh gradient from its consecutive decoded directions,
//      ĝ_t = D_t − m·D_{t−1} (Nesterov: (D_t − m²·û_{t−1}) / (1 + m), û_t = m·û_{t−1} + ĝ_t),
//      with û_t = D_t without Nesterov and û = 0 before the worker's first update (its buffer
//      starts as g, as torch's, which is m·0 + g);
//   2. computes c_t = λ ⊙ ĝ_t ⊙ ĝ_t ⊙ (w − w_stale) and keeps C per worker;
//   3. applies D_t + C_t (Nesterov: D_t + c_t + m·C_t) with asgd's weight (1/n, or
//      --staleness_lr's).
// With server-side momentum (--momentum_at server) the worker sends g itself, m = 0 here and the
// server's optimiser applies its momentum to the compensated gradient, as the paper's momentum
// variant does.
//
// Codecs. Compensation acts on the decoded update (after the uplink codec). With a lossless codec
// ĝ is exact. With error feedback the decoded stream is D_t = u_t + e_{t−1} − e_t, so ĝ also
// carries the difference of residuals and the Hessian estimate gets noisier. topk's momentum
// masking (codecs/momentum.h) zeroes the worker's buffer where it sent, which breaks the recursion
// in step 1; that combination is refused (psgd/factory.cc).
//
// Memory: three model-sized vectors per worker (w_stale, the last direction, C) and one shared
// (MeanSquare); ~3 n + 1 model copies on the server.
//
// Measured (bench/README.md, 4 workers, MLP, Fashion-MNIST, 2 epochs, momentum 0.9): no λ made
// asgd's final accuracy reliably reach ssgd's; the mean over 8 seeds moved by at most +0.8 points
// (simulator, strict turns), large λ diverge. Hence off by default.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "psgd/strategy.h"

namespace psgd {

struct DelayCompensationOptions {
  float lambda = 0.0f;  // λ (constant) or λ0 (adaptive); must be > 0 to build one
  bool adaptive = true;
  float mean_square_decay = 0.95f;  // adaptive: MeanSquare's moving-average factor
  float epsilon = 1e-7f;            // adaptive: inside the square root
  // The momentum the workers apply before sending (CodecSpec::momentum; 0: they send gradients).
  float momentum = 0.0f;
  bool nesterov = false;
};

class DelayCompensation {
 public:
  DelayCompensation(int node_count, std::size_t size, DelayCompensationOptions options);

  // `worker` was just sent `params` (as it will decode them): its next update is computed there.
  void sent(NodeId worker, std::span<const float> params);
  // The same, written in place: `worker`'s w_stale, to decode the parameters sent straight into.
  std::span<float> sent_buffer(NodeId worker);
  // `worker`'s momentum buffer starts afresh (a replacement worker): forget its history.
  void restart(NodeId worker);
  // `update` is the decoded (unweighted) update from `worker`, `current` the server's parameters
  // it is about to be applied to; adds the compensation to `update` in place.
  void compensate(NodeId worker, std::span<float> update, std::span<const float> current);

  const DelayCompensationOptions& options() const { return options_; }

  // Checkpoints: MeanSquare and each worker's inferred momentum buffer û and carried correction
  // C, which continue with that worker's own momentum buffer (restored on the worker). w_stale
  // is not kept: a restored server sends every worker the current parameters first, and sent()
  // records them. restore_state() throws ProtocolError for state of another shape.
  std::vector<std::uint8_t> state() const;
  void restore_state(std::span<const std::uint8_t> state);

 private:
  struct PerWorker {
    std::vector<float> stale;     // w_stale: the parameters last sent
    std::vector<float> previous;  // û: the worker's momentum buffer as the server infers it
    std::vector<float> carried;   // C: the corrections the worker's momentum would carry
  };
  DelayCompensationOptions options_;
  std::size_t size_;
  std::vector<PerWorker> workers_;
  std::vector<float> mean_square_;  // adaptive only
};

}  // namespace psgd
