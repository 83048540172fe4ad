#pragma once
// PowerSGD (Vogels, Karimireddy and Jaggi, NeurIPS 2019, "PowerSGD: Practical Low-Rank Gradient
// Compression for Distributed Optimization"): a rank-r approximation of each layer's gradient,
// computed with one step of power iteration whose two factors are summed by an allreduce.
//
// Each tensor of the model is a matrix M (rows = its first dimension, columns = the rest, as
// PyTorch's powerSGD_hook views it). One iteration, on every worker alike:
//
//   X = gradient + error                            error feedback (the part not yet applied)
//   P = X Q                 (rows x r)              Q: last iteration's, warm start
//   allreduce P (sum), orthogonalise P's columns    (Gram-Schmidt)
//   Q = Xᵀ P                (cols x r)
//   allreduce Q, divide by n                        Q is now the mean of the workers' Xᵀ P
//   update = P Qᵀ                                   the same on every worker (P, Q are)
//   error = X - update
//
// A tensor is compressed only when (rows + cols) r * min_compression_rate < rows * cols (PyTorch's
// _should_compress with its default 2): biases and other 1-D tensors, and small matrices, travel
// uncompressed and are summed exactly with the first allreduce (their mean is the update; no error
// is kept for them -- in powerSGD_hook their error is the local value minus the mean, whose mean
// over the workers is zero, so the applied updates are the same). The first Q is drawn from a
// normal distribution with a seed every worker shares (core/seeds.h kPowerSgd) and orthogonalised.
//
// What the allreduces carry per iteration: first U + Σ rows_i r values (U: the uncompressed
// tensors' sizes), then Σ cols_i r values, fp32; against Σ rows_i cols_i for a plain allreduce.
//
// Not torch: plain loops over flat float spans (r is small, the products are O(rows cols r)).
// One thread; no allocation after the first iteration.
#include <cstdint>
#include <span>
#include <vector>

#include "psgd/context.h"

namespace psgd {

struct PowerSgdOptions {
  int rank = 4;                     // r (PyTorch's matrix_approximation_rank)
  double min_compression_rate = 2;  // compress where it saves at least this factor
  std::uint64_t seed = 1;           // the first Q (the same on every worker)
  float orthogonalization_eps = 0;  // added to each column's norm (PyTorch's default 0)
};

class PowerSgd {
 public:
  // `shapes`: the model's tensors in flat order (their sizes add up to the gradient's length).
  PowerSgd(std::vector<MatrixShape> shapes, int world, PowerSgdOptions options);

  // Allreduce rounds per iteration (2).
  static constexpr int kRounds = 2;
  // Round 0: from this worker's gradient, the buffer to sum: the uncompressed tensors and P.
  std::span<float> first(std::span<const float> gradient);
  // Round 1, after the first buffer holds the sum over the workers: Q, to sum.
  std::span<float> second();
  // After the second buffer holds the sum: the update (the approximate mean gradient).
  void finish(std::span<float> update);

  // Elements summed by each round, and the gradient's length.
  std::size_t first_size() const { return first_.size(); }
  std::size_t second_size() const { return second_.size(); }
  std::size_t gradient_size() const { return length_; }
  // How many tensors are compressed, and the rank each gets (min(rows, cols, r)).
  std::size_t compressed_tensors() const { return compressed_.size(); }

  // Error feedback and the warm-start Q (the state a checkpoint must keep).
  std::vector<std::uint8_t> snapshot() const;
  void restore(std::span<const std::uint8_t> state);

 private:
  struct Compressed {
    std::uint64_t offset = 0;  // in the gradient
    std::uint64_t rows = 0, cols = 0;
    int rank = 0;
    std::uint64_t p = 0;  // offset of P in first_ (after the uncompressed values)
    std::uint64_t q = 0;  // offset of Q in second_ (and in q_)
  };
  struct Uncompressed {
    std::uint64_t offset = 0, size = 0;
    std::uint64_t at = 0;  // in first_
  };
  void initialise_q();

  std::size_t length_ = 0;
  int world_;
  PowerSgdOptions options_;
  std::vector<Compressed> compressed_;
  std::vector<Uncompressed> uncompressed_;
  std::vector<float> x_;      // gradient + error, this iteration
  std::vector<float> error_;  // compressed tensors' error (zero elsewhere)
  std::vector<float> q_;      // the mean Q of the last iteration (warm start)
  bool have_q_ = false;
  std::vector<float> first_;   // uncompressed values, then every P
  std::vector<float> second_;  // every Q
};

// Orthogonalises the `cols` columns of a row-major rows x cols matrix in place (modified
// Gram-Schmidt, as PyTorch's _orthogonalize_gram_schmidt; a zero column stays zero).
void orthogonalize_columns(std::span<float> m, std::uint64_t rows, int cols, float eps);

}  // namespace psgd
