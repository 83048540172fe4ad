// Codec throughput beside the yardsticks in the same binary (STYLE.md §9): encode and decode of
// every codec on 1 M and 25 M fp32 gradients against a memcpy of the same buffer, and topk
// selection against torch::topk. Bytes processed are always fp32 input bytes (4 per element).
//
//   build/bench/codec_bench --benchmark_filter=...
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstring>
#include <random>
#include <vector>

#include "codecs/error_feedback.h"
#include "codecs/factory.h"
#include "codecs/topk.h"

namespace psgd {
namespace {

const std::vector<float>& gradient(std::size_t n) {
  static std::vector<float> small, large;
  std::vector<float>& g = n <= (1u << 20) ? small : large;
  if (g.size() != n) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    g.resize(n);
    for (auto& v : g)
      v = normal(rng);
  }
  return g;
}

std::size_t size_arg(const benchmark::State& state) {
  return static_cast<std::size_t>(state.range(0));
}

void BM_memcpy(benchmark::State& state) {
  const auto& g = gradient(size_arg(state));
  std::vector<float> out(g.size());
  for (auto _ : state) {
    std::memcpy(out.data(), g.data(), g.size() * sizeof(float));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

// The codec without error feedback: the codec's own cost (EF adds a decode and a pass).
CodecSpec spec(const char* name) {
  return CodecSpec{.name = name, .levels = 8, .ratio = 0.01, .error_feedback = "off"};
}

// Encoding into one reused Payload, as the workers do (psgd/common.h PayloadRecycler): the
// steady state allocates nothing.
void BM_encode(benchmark::State& state, const char* name) {
  const auto& g = gradient(size_arg(state));
  auto codec = make_codec(spec(name));
  Payload p;
  for (auto _ : state) {
    codec->encode_into(g, p);
    benchmark::DoNotOptimize(p.bytes.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
  state.counters["ratio"] =
      static_cast<double>(g.size() * 4) / static_cast<double>(codec->encode(g).bytes.size());
}

void BM_decode(benchmark::State& state, const char* name) {
  const auto& g = gradient(size_arg(state));
  auto codec = make_codec(spec(name));
  const Payload p = codec->encode(g);
  std::vector<float> out(g.size());
  for (auto _ : state) {
    codec->decode(p, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

void BM_decode_add(benchmark::State& state, const char* name) {
  const auto& g = gradient(size_arg(state));
  auto codec = make_codec(spec(name));
  const Payload p = codec->encode(g);
  std::vector<float> acc(g.size());
  for (auto _ : state) {
    codec->decode_add(p, acc, 0.25f);
    benchmark::DoNotOptimize(acc.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

// What a worker pays per iteration with error feedback on.
void BM_encode_ef(benchmark::State& state, const char* name) {
  const auto& g = gradient(size_arg(state));
  CodecSpec s = spec(name);
  s.error_feedback = "on";
  auto codec = make_codec(s);
  Payload p;
  for (auto _ : state) {
    codec->encode_into(g, p);
    benchmark::DoNotOptimize(p.bytes.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

void BM_topk_select(benchmark::State& state) {
  const auto& g = gradient(size_arg(state));
  const std::uint64_t k = sparse_k(g.size(), 0.01);
  std::vector<std::uint64_t> idx, scratch;
  for (auto _ : state) {
    select_topk(g, k, idx, scratch);
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

// torch::topk of |g| on the same vector (values and indices; torch's CPU threads as configured).
void BM_torch_topk(benchmark::State& state) {
  const auto& g = gradient(size_arg(state));
  const auto k = static_cast<std::int64_t>(sparse_k(g.size(), 0.01));
  auto t = torch::from_blob(const_cast<float*>(g.data()), {static_cast<std::int64_t>(g.size())},
                            torch::kFloat32);
  for (auto _ : state) {
    auto [values, indices] = torch::topk(t.abs(), k, /*dim=*/0, /*largest=*/true,
                                         /*sorted=*/false);
    benchmark::DoNotOptimize(indices.data_ptr());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * g.size() * 4));
}

constexpr std::int64_t k1M = 1 << 20, k25M = 25 * (1 << 20);

#define PSGD_SIZES ->Arg(k1M)->Arg(k25M)->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK(BM_memcpy) PSGD_SIZES;
#define PSGD_CODEC(name)                                \
  BENCHMARK_CAPTURE(BM_encode, name, #name) PSGD_SIZES; \
  BENCHMARK_CAPTURE(BM_decode, name, #name) PSGD_SIZES; \
  BENCHMARK_CAPTURE(BM_decode_add, name, #name) PSGD_SIZES;
PSGD_CODEC(plain)
PSGD_CODEC(fp16)
PSGD_CODEC(bf16)
PSGD_CODEC(qsgd)
PSGD_CODEC(sign)
PSGD_CODEC(topk)
PSGD_CODEC(randk)
BENCHMARK_CAPTURE(BM_encode_ef, sign, "sign") PSGD_SIZES;
BENCHMARK_CAPTURE(BM_encode_ef, topk, "topk") PSGD_SIZES;
BENCHMARK(BM_topk_select) PSGD_SIZES;
BENCHMARK(BM_torch_topk) PSGD_SIZES;

}  // namespace
}  // namespace psgd

BENCHMARK_MAIN();
