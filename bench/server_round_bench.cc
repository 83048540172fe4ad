// The parameter server's model-sized work per ssgd round, beside its yardsticks in the same
// binary: the mean of the workers' gradients (psgd::mean_of, summed block by block) against the
// three-pass sum it replaced (copy the first part, add each other part over the whole vector,
// scale) and a memcpy of one gradient; the parameters' reply encoded into a fresh payload (one
// allocation per round, as before) against into the last round's buffer (what SsgdServer does
// now). Sizes: the MLP 784-256-10 (203,530 values) and 25 M values; 4 workers.
//
//   build/bench/server_round_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "codecs/plain.h"
#include "psgd/common.h"

namespace psgd {
namespace {

constexpr int kWorkers = 4;

const std::vector<std::vector<float>>& gradients(std::size_t n) {
  static std::vector<std::vector<float>> g;
  if (g.empty() || g[0].size() != n) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    g.assign(kWorkers, std::vector<float>(n));
    for (auto& part : g) {
      for (auto& v : part)
        v = normal(rng);
    }
  }
  return g;
}

std::size_t size_arg(const benchmark::State& state) {
  return static_cast<std::size_t>(state.range(0));
}

void set_bytes(benchmark::State& state, std::size_t n, int vectors) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * vectors *
                          static_cast<std::int64_t>(n) * 4);
}

void BM_memcpy_one_gradient(benchmark::State& state) {
  const auto& g = gradients(size_arg(state));
  std::vector<float> out(g[0].size());
  for (auto _ : state) {
    std::memcpy(out.data(), g[0].data(), out.size() * sizeof(float));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, out.size(), 1);
}

// The yardstick: the sum as psgd computed it before (the sum goes through memory once per part
// and once more for the scaling).
void BM_mean_three_passes(benchmark::State& state) {
  const auto& g = gradients(size_arg(state));
  const std::size_t n = g[0].size();
  std::vector<float> sum(n);
  for (auto _ : state) {
    float* __restrict__ dst = sum.data();
    std::copy(g[0].begin(), g[0].end(), sum.begin());
    for (std::size_t k = 1; k < g.size(); ++k) {
      const float* __restrict__ src = g[k].data();
      for (std::size_t i = 0; i < n; ++i)
        dst[i] += src[i];
    }
    const float inv = 1.0f / static_cast<float>(g.size());
    for (std::size_t i = 0; i < n; ++i)
      dst[i] *= inv;
    benchmark::DoNotOptimize(sum.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n, kWorkers);
}

void BM_mean_of(benchmark::State& state) {
  const auto& g = gradients(size_arg(state));
  const std::vector<std::span<const float>> parts(g.begin(), g.end());
  std::vector<float> sum(g[0].size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(mean_of(parts, sum).data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, sum.size(), kWorkers);
}

// The reply as before: Codec::encode, a fresh model-sized buffer every round.
void BM_reply_fresh_buffer(benchmark::State& state) {
  const auto& g = gradients(size_arg(state));
  PlainCodec codec;
  for (auto _ : state) {
    Payload p = codec.encode(g[0]);
    benchmark::DoNotOptimize(p.bytes.data());
  }
  set_bytes(state, g[0].size(), 1);
}

// The reply now: encoded into the last round's buffer.
void BM_reply_reused_buffer(benchmark::State& state) {
  const auto& g = gradients(size_arg(state));
  PlainCodec codec;
  Payload p;
  for (auto _ : state) {
    codec.encode_into(g[0], p);
    benchmark::DoNotOptimize(p.bytes.data());
  }
  set_bytes(state, g[0].size(), 1);
}

#define PSGD_SIZES ->Arg(203530)->Arg(25 << 20)->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_memcpy_one_gradient) PSGD_SIZES;
BENCHMARK(BM_mean_three_passes) PSGD_SIZES;
BENCHMARK(BM_mean_of) PSGD_SIZES;
BENCHMARK(BM_reply_fresh_buffer) PSGD_SIZES;
BENCHMARK(BM_reply_reused_buffer) PSGD_SIZES;

}  // namespace
}  // namespace psgd

BENCHMARK_MAIN();
