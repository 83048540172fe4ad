// The gloo backend of the allreduce strategy equals our ring: both give the element-wise sum,
// bit for bit, on the same inputs (ranks as threads over loopback).
#include "nn/gloo_allreduce.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "core/error.h"
#include "psgd/tcp_ring.h"

namespace psgd {
namespace {

std::vector<float> input(int rank, std::size_t length) {
  std::vector<float> v(length);
  for (std::size_t i = 0; i < length; ++i)
    v[i] = static_cast<float>((rank + 1) * 100 + static_cast<int>(i % 89)) * 0.5f;
  return v;
}

// Each rank's buffer after one allreduce through the collective `make(rank)` returns.
std::vector<std::vector<float>> reduce_on_threads(
    int world, std::size_t length, const std::function<std::unique_ptr<Collective>(int)>& make) {
  std::vector<std::vector<float>> out(static_cast<std::size_t>(world));
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto c = make(r);
        auto data = input(r, length);
        c->allreduce_sum(data);
        out[static_cast<std::size_t>(r)] = std::move(data);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (const auto& e : errors)
    EXPECT_EQ(e, "");
  return out;
}

class GlooEqualsRing : public ::testing::TestWithParam<int> {};

TEST_P(GlooEqualsRing, SameSumOnEveryRank) {
  const int world = GetParam();
  const std::size_t length = 10007;  // not a multiple of any world size
  nn::GlooStoreHost host(world);
  auto gloo = reduce_on_threads(world, length, [&](int r) -> std::unique_ptr<Collective> {
    return std::make_unique<nn::GlooAllreduce>(
        nn::GlooOptions{.rank = r, .world = world, .store_port = host.port(), .timeout_s = 20},
        r == 0 ? &host : nullptr);
  });
  std::vector<std::unique_ptr<TcpRing>> rings;
  std::vector<net::PeerAddress> addresses;
  for (int r = 0; r < world; ++r) {
    rings.push_back(std::make_unique<TcpRing>(r, world, TcpRingOptions{.timeout_s = 10}));
    addresses.push_back({"127.0.0.1", rings.back()->listen()});
  }
  struct Borrowed final : Collective {
    TcpRing* ring = nullptr;
    void allreduce_sum(std::span<float> d) override { ring->allreduce_sum(d); }
    std::string name() const override { return "ring"; }
  };
  auto ring = reduce_on_threads(world, length, [&](int r) -> std::unique_ptr<Collective> {
    auto b = std::make_unique<Borrowed>();
    b->ring = rings[static_cast<std::size_t>(r)].get();
    b->ring->connect(addresses);
    return b;
  });
  std::vector<float> sum(length, 0.0f);
  for (int r = 0; r < world; ++r) {
    const auto v = input(r, length);
    for (std::size_t i = 0; i < length; ++i)
      sum[i] += v[i];
  }
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(gloo[static_cast<std::size_t>(r)], sum) << "gloo rank " << r;
    EXPECT_EQ(ring[static_cast<std::size_t>(r)], sum) << "ring rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, GlooEqualsRing, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace psgd
