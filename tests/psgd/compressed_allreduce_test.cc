// Compressed allreduce (psgd/allreduce_compression.h): the ring carrying fp16 and PowerSGD, each
// tested for its defining property; the job's table rules refuse what does not apply.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <random>

#include "core/error.h"
#include "psgd/allreduce_compression.h"
#include "psgd/job.h"
#include "psgd/powersgd.h"
#include "psgd/ring_allreduce.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

std::vector<float> gaussian(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v)
    x = d(rng);
  return v;
}

struct RingRun {
  std::vector<std::vector<float>> data;
  std::uint64_t bytes = 0;  // sent by all ranks together
};

// Every rank sums its `data[r]` over an in-memory ring, delivering in order.
RingRun run_ring(std::vector<std::vector<float>> data, RingOptions options) {
  const int world = static_cast<int>(data.size());
  std::vector<RingAllreduce> ranks;
  std::vector<std::deque<std::shared_ptr<const Message>>> inbox(data.size());
  for (int r = 0; r < world; ++r)
    ranks.emplace_back(r, world, options);
  auto post = [&](const Outbox& out) {
    for (const auto& e : out)
      inbox.at(static_cast<std::size_t>(e.to)).push_back(e.message);
  };
  for (int r = 0; r < world; ++r) {
    Outbox out;
    ranks[static_cast<std::size_t>(r)].start(0, data[static_cast<std::size_t>(r)], out);
    post(out);
  }
  for (bool moved = true; moved;) {
    moved = false;
    for (std::size_t r = 0; r < data.size(); ++r) {
      if (inbox[r].empty()) continue;
      Outbox out;
      ranks[r].on_chunk(std::get<RingChunk>(*inbox[r].front()), out);
      inbox[r].pop_front();
      post(out);
      moved = true;
    }
  }
  RingRun run{.data = std::move(data)};
  for (auto& rank : ranks) {
    EXPECT_TRUE(rank.done());
    run.bytes += rank.bytes_sent();
  }
  return run;
}

// fp16 on the wire: the fp32 sum within fp16 rounding, the same bits on every rank, half the
// bytes. Each value is rounded once per hop (n - 1 partial sums, then the complete sum), each
// rounding within 2^-11 of the value rounded, and a partial sum is at most the sum of the
// magnitudes, so |error| <= n 2^-11 sum_r |x_r| (plus fp32 rounding, far smaller).
TEST(Fp16Ring, EqualsTheSumWithinFp16RoundingOnEveryRankWithHalfTheBytes) {
  for (int world : {2, 3, 4, 5}) {
    // Segments of 1000, chunks of 50: even lengths, no padding halves.
    const std::size_t length = static_cast<std::size_t>(world) * 1000;
    std::vector<std::vector<float>> data;
    for (int r = 0; r < world; ++r)
      data.push_back(gaussian(length, 10 + static_cast<std::uint32_t>(r)));
    std::vector<double> sum(length, 0.0), magnitude(length, 0.0);
    for (const auto& d : data) {
      for (std::size_t i = 0; i < length; ++i) {
        sum[i] += d[i];
        magnitude[i] += std::fabs(d[i]);
      }
    }
    const RingRun full = run_ring(data, RingOptions{.chunk_elements = 50});
    const RingRun half = run_ring(data, RingOptions{.chunk_elements = 50, .half = true});
    double worst = 0;
    for (int r = 0; r < world; ++r) {
      const auto& got = half.data[static_cast<std::size_t>(r)];
      EXPECT_EQ(got, half.data[0]) << "rank " << r << " of " << world << " differs from rank 0";
      for (std::size_t i = 0; i < length; ++i) {
        const double bound = world * std::ldexp(magnitude[i], -11) + 1e-6;
        ASSERT_LE(std::fabs(got[i] - sum[i]), bound) << "value " << i << " world " << world;
        worst = std::max(worst, std::fabs(got[i] - sum[i]));
      }
    }
    EXPECT_GT(worst, 0.0) << "fp16 rounding must show somewhere: is the ring really sending fp16?";
    // Every rank sends 2(n-1) segments; fp32: 4 bytes a value, fp16: 2.
    EXPECT_EQ(full.bytes, 2u * (world - 1) * length * 4);
    EXPECT_EQ(half.bytes * 2, full.bytes) << "world " << world;
  }
}

// An odd chunk carries one padding half; odd lengths and worlds larger than the data still sum.
TEST(Fp16Ring, OddLengthsAndTinyBuffersSumExactlyForSmallIntegers) {
  for (int world : {1, 2, 3, 6}) {
    for (std::size_t length : {0u, 1u, 5u, 17u, 1001u}) {
      std::vector<std::vector<float>> data;
      std::vector<float> want(length, 0.0f);
      for (int r = 0; r < world; ++r) {
        std::vector<float> v(length);
        for (std::size_t i = 0; i < length; ++i) {
          v[i] = static_cast<float>((r + 1) * static_cast<int>(i % 13) - 20);  // exact in fp16
          want[i] += v[i];
        }
        data.push_back(v);
      }
      const RingRun run = run_ring(data, RingOptions{.chunk_elements = 3, .half = true});
      for (const auto& got : run.data)
        EXPECT_EQ(got, want) << "world " << world << " length " << length;
    }
  }
}

TEST(Fp16Ring, ARingOfFp32RefusesAnFp16ChunkWithOneLine) {
  RingAllreduce fp16(0, 2, RingOptions{.chunk_elements = 8, .half = true});
  RingAllreduce fp32(1, 2, RingOptions{.chunk_elements = 8});
  std::vector<float> a(8, 1.0f), b(8, 1.0f);
  Outbox out, ignored;
  fp16.start(0, a, out);
  fp32.start(0, b, ignored);
  try {
    fp32.on_chunk(std::get<RingChunk>(*out.at(0).message), ignored);
    FAIL() << "accepted";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("same length and precision"), std::string::npos)
        << e.what();
  }
}

// Sums each round's buffers over the workers as an allreduce would, then finishes.
std::vector<std::vector<float>> power_step(std::vector<PowerSgd>& workers,
                                           const std::vector<std::vector<float>>& grads) {
  std::vector<std::span<float>> first;
  for (std::size_t w = 0; w < workers.size(); ++w)
    first.push_back(workers[w].first(grads[w]));
  std::vector<float> sum(first[0].size(), 0.0f);
  for (auto b : first)
    for (std::size_t i = 0; i < b.size(); ++i)
      sum[i] += b[i];
  for (auto b : first)
    std::copy(sum.begin(), sum.end(), b.begin());
  std::vector<std::span<float>> second;
  for (auto& w : workers)
    second.push_back(w.second());
  sum.assign(second[0].size(), 0.0f);
  for (auto b : second)
    for (std::size_t i = 0; i < b.size(); ++i)
      sum[i] += b[i];
  for (auto b : second)
    std::copy(sum.begin(), sum.end(), b.begin());
  std::vector<std::vector<float>> updates;
  for (auto& w : workers) {
    updates.emplace_back(w.gradient_size());
    w.finish(updates.back());
  }
  return updates;
}

double norm(std::span<const float> v) {
  double s = 0;
  for (float x : v)
    s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Worker w's gradient of a rows x cols matrix A B_wᵀ (rank r, column space A shared): the mean is
// rank r too, and PowerSGD's one power step recovers it exactly (P spans A's columns, so
// P Pᵀ M = M), on every worker alike. A bias (1-D) travels exactly.
TEST(PowerSgd, ARankRMeanIsRecoveredExactlyAndEveryWorkerAppliesTheSameUpdate) {
  constexpr std::uint64_t kRows = 24, kCols = 40;
  constexpr int kRank = 3, kWorld = 3;
  const std::vector<MatrixShape> shapes{{kRows, kCols}, {kRows, 1}};
  const auto a = gaussian(kRows * kRank, 1);
  std::vector<std::vector<float>> grads;
  std::vector<float> mean(kRows * kCols + kRows, 0.0f);
  for (int w = 0; w < kWorld; ++w) {
    const auto b = gaussian(kCols * kRank, 20 + static_cast<std::uint32_t>(w));
    const auto bias = gaussian(kRows, 40 + static_cast<std::uint32_t>(w));
    std::vector<float> g(kRows * kCols + kRows);
    for (std::uint64_t i = 0; i < kRows; ++i)
      for (std::uint64_t j = 0; j < kCols; ++j)
        for (int k = 0; k < kRank; ++k)
          g[i * kCols + j] += a[i * kRank + k] * b[j * kRank + k];
    std::copy(bias.begin(), bias.end(), g.begin() + kRows * kCols);
    for (std::size_t i = 0; i < g.size(); ++i)
      mean[i] += g[i] / kWorld;
    grads.push_back(g);
  }
  std::vector<PowerSgd> workers;
  for (int w = 0; w < kWorld; ++w)
    workers.emplace_back(shapes, kWorld, PowerSgdOptions{.rank = kRank, .seed = 7});
  ASSERT_EQ(workers[0].compressed_tensors(), 1u);
  const auto updates = power_step(workers, grads);
  for (int w = 1; w < kWorld; ++w)
    EXPECT_EQ(updates[static_cast<std::size_t>(w)], updates[0]) << "worker " << w;
  std::vector<float> diff(mean.size());
  for (std::size_t i = 0; i < mean.size(); ++i)
    diff[i] = updates[0][i] - mean[i];
  EXPECT_LT(norm(diff), 1e-4 * norm(mean)) << "a rank-" << kRank << " mean is not exact";
  for (std::uint64_t i = 0; i < kRows; ++i) {  // the bias: the mean, as plain allreduce
    float sum = 0;
    for (const auto& g : grads)
      sum += g[kRows * kCols + i];
    EXPECT_EQ(updates[0][kRows * kCols + i], sum * (1.0f / kWorld));
  }
}

// Error feedback: what a step does not apply is carried into the next, so the sum of applied
// updates tracks the sum of gradients. With a constant full-rank gradient G and rank 1, one step
// applies a poor approximation, but after T steps sum(updates) = T G - error_T with a bounded
// error, so the mean update approaches G; without the carry it would stay at the first step's.
TEST(PowerSgd, ErrorFeedbackMakesTheSumOfUpdatesTrackTheSumOfGradients) {
  constexpr std::uint64_t kRows = 16, kCols = 20;
  const std::vector<MatrixShape> shapes{{kRows, kCols}};
  const auto g = gaussian(kRows * kCols, 3);
  std::vector<PowerSgd> one;
  one.emplace_back(shapes, 1, PowerSgdOptions{.rank = 1, .seed = 9});
  std::vector<float> total(g.size(), 0.0f);
  constexpr int kSteps = 200;
  double first_error = 0;
  for (int t = 0; t < kSteps; ++t) {
    const auto u = power_step(one, {g})[0];
    std::vector<float> d(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      total[i] += u[i];
      d[i] = u[i] - g[i];
    }
    if (t == 0) first_error = norm(d) / norm(g);
  }
  std::vector<float> lag(g.size());
  for (std::size_t i = 0; i < g.size(); ++i)
    lag[i] = total[i] / kSteps - g[i];
  EXPECT_GT(first_error, 0.3) << "rank 1 of a random 16 x 20 matrix should be a poor step";
  EXPECT_LT(norm(lag) / norm(g), 0.05) << "the mean applied update does not track the gradient";
}

// What travels: U + Σ rows r, then Σ cols r values (the MLP 784-256-10: two weight matrices
// compressed, two biases exact), and min(rows, cols, r) for a thin matrix.
TEST(PowerSgd, RoundSizesFollowTheFormula) {
  const std::vector<MatrixShape> mlp{{256, 784}, {256, 1}, {10, 256}, {10, 1}};
  PowerSgd p(mlp, 4, PowerSgdOptions{.rank = 4});
  EXPECT_EQ(p.compressed_tensors(), 2u);
  EXPECT_EQ(p.first_size(), 256u + 10u + 256u * 4 + 10u * 4);
  EXPECT_EQ(p.second_size(), 784u * 4 + 256u * 4);
  EXPECT_EQ(p.gradient_size(), 256u * 784 + 256 + 10 * 256 + 10);
  // 3 x 100 at rank 4: rank 3, (3 + 100) 3 2 = 618 < 300? no: sent exactly.
  PowerSgd thin({{3, 100}, {50, 60}}, 2, PowerSgdOptions{.rank = 4});
  EXPECT_EQ(thin.compressed_tensors(), 1u);
  EXPECT_EQ(thin.first_size(), 300u + 50u * 4);
  EXPECT_EQ(thin.second_size(), 60u * 4);
}

// The checkpoint keeps error feedback and the warm-start Q: a restored worker continues with
// exactly the updates the uninterrupted one applies.
TEST(PowerSgd, SnapshotAndRestoreContinueBitIdentically) {
  const std::vector<MatrixShape> shapes{{12, 18}, {12, 1}};
  std::vector<PowerSgd> a, b;
  a.emplace_back(shapes, 1, PowerSgdOptions{.rank = 2, .seed = 4});
  b.emplace_back(shapes, 1, PowerSgdOptions{.rank = 2, .seed = 5});  // another Q, until restored
  for (int t = 0; t < 3; ++t)
    power_step(a, {gaussian(12 * 18 + 12, 50 + static_cast<std::uint32_t>(t))});
  b[0].restore(a[0].snapshot());
  for (int t = 3; t < 6; ++t) {
    const auto g = gaussian(12 * 18 + 12, 50 + static_cast<std::uint32_t>(t));
    EXPECT_EQ(power_step(a, {g}), power_step(b, {g})) << "step " << t;
  }
  PowerSgd other({{5, 5}}, 1, PowerSgdOptions{});
  EXPECT_THROW(other.restore(a[0].snapshot()), ConfigError);
}

std::string refusal(StrategyJob job) {
  try {
    job.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(AllreduceCompressionTable, TheJobAcceptsWhatAppliesAndRefusesTheRestInOneLine) {
  StrategyJob job;
  job.psgd = "allreduce";
  for (const auto& entry : allreduce_compression_table()) {
    job.codec = std::string(entry.name);
    EXPECT_EQ(refusal(job), "") << entry.name;
  }
  job.codec = "powersgd";
  job.codec_rank = 2;
  EXPECT_EQ(refusal(job), "");
  job.codec_rank = 0;
  EXPECT_NE(refusal(job).find("--codec_rank 0"), std::string::npos);
  job.codec_rank = 2;
  job.allreduce_backend = "gloo";
  EXPECT_NE(refusal(job).find("runs on psgd's ring only"), std::string::npos) << refusal(job);
  job.allreduce_backend = "ring";
  job.error_feedback = "off";
  EXPECT_NE(refusal(job).find("--error_feedback off with --psgd allreduce"), std::string::npos);
  job.error_feedback = "auto";
  job.codec = "fp16";
  EXPECT_NE(refusal(job).find("--codec_rank applies to --codec powersgd"), std::string::npos)
      << refusal(job);
  job.codec_rank = 4;
  job.codec = "topk";
  EXPECT_NE(refusal(job).find("carries only compressions whose sums mean something"),
            std::string::npos)
      << refusal(job);
  job.psgd = "ssgd";
  job.codec = "powersgd";
  EXPECT_NE(refusal(job).find("use --psgd allreduce"), std::string::npos) << refusal(job);
  for (const std::string& line : {refusal(job)})
    EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace psgd
