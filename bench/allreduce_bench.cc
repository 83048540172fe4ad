// allreduce_bench: our ring allreduce (psgd/tcp_ring.h) against Gloo's (c10d ProcessGroupGloo),
// same ranks, same buffers, same loopback, in one run, so the figure is a ratio.
//
//   build/bench/allreduce_bench [--sizes_mb 1,100] [--worlds 2,4] [--seconds 2] [--chunk_kb 256]
//                               [--repeats 1] [--backends ours,gloo]
//
// Ranks are threads of this process, each with its own TCP links (ours) or its own Gloo group
// and device (theirs). For each size and world: one warm-up allreduce, then as many as fit in
// --seconds (at least 3); time per allreduce is the slowest rank's. With --repeats, ours and
// Gloo are measured alternately that many times and the medians are shown. Algorithm bandwidth =
// buffer bytes / time per allreduce (NCCL's "algbw"; a ring moves 2(n-1)/n of that per rank).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <barrier>
#include <chrono>
#include <ctime>
#include <functional>
#include <limits>
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
  std::vector<std::string> backends{"ours", "gloo"};
  int repeats = 1;
};

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Timing {
  double seconds = 0;      // per allreduce, slowest rank
  double cpu_seconds = 0;  // CPU time of the whole process (all ranks, all their threads)
};

// Runs `make(rank)` then `iters` calls of `collective->allreduce_sum` on every rank (threads);
// returns seconds per allreduce (slowest rank) and CPU seconds per allreduce, summed over the
// ranks (a figure that load from other processes barely changes).
Timing time_allreduce(int world, std::size_t floats, int iters,
                      const std::function<std::unique_ptr<psgd::Collective>(int)>& make) {
  std::vector<double> took(static_cast<std::size_t>(world), 0);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<double> cpu;
  std::barrier sync(world, [&]() noexcept { cpu.push_back(process_cpu_seconds()); });
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto c = make(r);
        std::vector<float> data(floats, static_cast<float>(r + 1));
        c->allreduce_sum(data);  // warm-up (and the first connection setup of lazy engines)
        sync.arrive_and_wait();
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i)
          c->allreduce_sum(data);
        took[static_cast<std::size_t>(r)] =
            std::chrono::duration<double>(Clock::now() - t0).count() / iters;
        sync.arrive_and_wait();
        if (!(data[0] > 0)) errors[static_cast<std::size_t>(r)] = "wrong sum";
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
        sync.arrive_and_drop();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  return {*std::max_element(took.begin(), took.end()), (cpu.at(1) - cpu.at(0)) / iters};
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
  app.add_option("--repeats", o.repeats,
                 "Measurements per backend, interleaved; the table shows the medians")
      ->check(CLI::PositiveNumber);
  app.add_option("--backends", o.backends,
                 "Which to time: ours, gloo or both (the ratio needs both)")
      ->delimiter(',')
      ->check(CLI::IsMember({"ours", "gloo"}));
  CLI11_PARSE(app, argc, argv);

  fmt::print("{:>6} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}\n", "ranks", "MB",
             "ours ms", "gloo ms", "ours GB/s", "gloo GB/s", "ours cpu", "gloo cpu", "ours/gloo");
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
      auto iters_for = [&](const std::function<Timing(int)>& run) {
        const double once = run(1).seconds;
        return std::max(3, static_cast<int>(o.seconds / std::max(once, 1e-6)));
      };
      auto wanted = [&](const char* b) {
        return std::find(o.backends.begin(), o.backends.end(), b) != o.backends.end();
      };
      const int ours_iters = wanted("ours") ? iters_for(run_ours) : 0;
      const int gloo_iters = wanted("gloo") ? iters_for(run_gloo) : 0;
      // Interleaved repeats, median of each: load from other processes hits both sides alike.
      std::vector<double> ours_s, gloo_s, ours_cpu, gloo_cpu;
      for (int k = 0; k < o.repeats; ++k) {
        if (ours_iters) {
          const Timing t = run_ours(ours_iters);
          ours_s.push_back(t.seconds);
          ours_cpu.push_back(t.cpu_seconds);
        }
        if (gloo_iters) {
          const Timing t = run_gloo(gloo_iters);
          gloo_s.push_back(t.seconds);
          gloo_cpu.push_back(t.cpu_seconds);
        }
      }
      const double bytes = static_cast<double>(floats * sizeof(float));
      const double os = median(ours_s), gs = median(gloo_s);
      fmt::print(
          "{:>6} {:>9.0f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>9.2f}\n",
          world, mb, 1e3 * os, 1e3 * gs, bytes / os / 1e9, bytes / gs / 1e9, 1e3 * median(ours_cpu),
          1e3 * median(gloo_cpu), gs / os);
      std::fflush(stdout);
    }
  }
  return 0;
}
