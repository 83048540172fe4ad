// allreduce_bench: our ring allreduce (psgd/tcp_ring.h) against Gloo's (c10d ProcessGroupGloo),
// same ranks, same buffers, same loopback, in one run, so the figure is a ratio.
//
//   build/bench/allreduce_bench [--sizes_mb 1,100] [--worlds 2,4] [--seconds 2] [--chunk_kb 256]
//
// Ranks are threads of this process, each with its own TCP links (ours) or its own Gloo group
// and device (theirs). For each size and world: one warm-up allreduce, then as many as fit in
// --seconds (at least 3); time per allreduce is the slowest rank's. Algorithm bandwidth =
// buffer bytes / time per allreduce (NCCL's "algbw"; a ring moves 2(n-1)/n of that per rank).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "nn/gloo_allreduce.h"
#include "psgd/tcp_ring.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<double> sizes_mb{1, 100};
  std::vector<int> worlds{2, 4};
  double seconds = 2;
  int chunk_kb = 256;
};

// Runs `make(rank)` then `iters` calls of `collective->allreduce_sum` on every rank (threads);
// returns seconds per allreduce (slowest rank).
double time_allreduce(int world, std::size_t floats, int iters,
                      const std::function<std::unique_ptr<psgd::Collective>(int)>& make) {
  std::vector<double> took(static_cast<std::size_t>(world), 0);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto c = make(r);
        std::vector<float> data(floats, static_cast<float>(r + 1));
        c->allreduce_sum(data);  // warm-up (and the first connection setup of lazy engines)
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i)
          c->allreduce_sum(data);
        took[static_cast<std::size_t>(r)] =
            std::chrono::duration<double>(Clock::now() - t0).count() / iters;
        if (!(data[0] > 0)) errors[static_cast<std::size_t>(r)] = "wrong sum";
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  return *std::max_element(took.begin(), took.end());
}

std::unique_ptr<psgd::Collective> ours(int rank, std::vector<std::unique_ptr<psgd::TcpRing>>& rings,
                                       const std::vector<psgd::net::PeerAddress>& addresses) {
  struct Borrowed final : psgd::Collective {
    psgd::TcpRing* ring;
    void allreduce_sum(std::span<float> d) override { ring->allreduce_sum(d); }
    std::string name() const override { return "ring"; }
  };
  auto b = std::make_unique<Borrowed>();
  b->ring = rings[static_cast<std::size_t>(rank)].get();
  b->ring->connect(addresses);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Ring allreduce (ours) against Gloo on loopback"};
  app.add_option("--sizes_mb", o.sizes_mb, "Buffer sizes in MB (10^6 bytes) of fp32")
      ->delimiter(',');
  app.add_option("--worlds", o.worlds, "Ranks")->delimiter(',');
  app.add_option("--seconds", o.seconds, "Time budget per measurement");
  app.add_option("--chunk_kb", o.chunk_kb, "Our ring's chunk size");
  CLI11_PARSE(app, argc, argv);

  fmt::print("{:>6} {:>9} {:>12} {:>12} {:>12} {:>12} {:>8}\n", "ranks", "MB", "ours ms", "gloo ms",
             "ours GB/s", "gloo GB/s", "ours/gloo");
  for (int world : o.worlds) {
    for (double mb : o.sizes_mb) {
      const auto floats = static_cast<std::size_t>(mb * 1e6 / sizeof(float));
      const std::size_t chunk_floats = static_cast<std::size_t>(o.chunk_kb) * 1024 / sizeof(float);
      auto run_ours = [&](int iters) {
        std::vector<std::unique_ptr<psgd::TcpRing>> rings;
        std::vector<psgd::net::PeerAddress> addresses;
        for (int r = 0; r < world; ++r) {
          rings.push_back(std::make_unique<psgd::TcpRing>(
              r, world, psgd::TcpRingOptions{.ring = {.chunk_elements = chunk_floats}}));
          addresses.push_back({"127.0.0.1", rings.back()->listen()});
        }
        return time_allreduce(world, floats, iters,
                              [&](int r) { return ours(r, rings, addresses); });
      };
      auto run_gloo = [&](int iters) {
        psgd::nn::GlooStoreHost host(world);
        return time_allreduce(world, floats, iters, [&](int r) {
          return std::make_unique<psgd::nn::GlooAllreduce>(
              psgd::nn::GlooOptions{.rank = r, .world = world, .store_port = host.port()},
              r == 0 ? &host : nullptr);
        });
      };
      auto iters_for = [&](const std::function<double(int)>& run) {
        const double once = run(1);
        return std::max(3, static_cast<int>(o.seconds / std::max(once, 1e-6)));
      };
      const double ours_s = run_ours(iters_for(run_ours));
      const double gloo_s = run_gloo(iters_for(run_gloo));
      const double bytes = static_cast<double>(floats * sizeof(float));
      fmt::print("{:>6} {:>9.0f} {:>12.2f} {:>12.2f} {:>12.2f} {:>12.2f} {:>8.2f}\n", world, mb,
                 1e3 * ours_s, 1e3 * gloo_s, bytes / ours_s / 1e9, bytes / gloo_s / 1e9,
                 gloo_s / ours_s);
      std::fflush(stdout);
    }
  }
  return 0;
}
