// Ring allreduce: the state machine alone (in-memory delivery), then ranks as threads over
// loopback TCP, then a peer that disappears; and the allreduce strategy driven as roles.
#include "psgd/ring_allreduce.h"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <exception>
#include <future>
#include <random>
#include <thread>

#include "core/error.h"
#include "network/frame.h"
#include "psgd/allreduce.h"
#include "psgd/tcp_ring.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

// Integer-valued inputs: every partial sum is exact, so the result must equal the sum exactly.
std::vector<float> input(int rank, std::size_t length, int round = 0) {
  std::vector<float> v(length);
  for (std::size_t i = 0; i < length; ++i)
    v[i] = static_cast<float>((rank + 1) * 1000 + static_cast<int>(i % 997) - 3 * round);
  return v;
}

std::vector<float> expected_sum(int world, std::size_t length, int round = 0) {
  std::vector<float> sum(length, 0.0f);
  for (int r = 0; r < world; ++r) {
    const auto v = input(r, length, round);
    for (std::size_t i = 0; i < length; ++i)
      sum[i] += v[i];
  }
  return sum;
}

class RingInMemory : public ::testing::TestWithParam<std::tuple<int, std::size_t>> {};

TEST_P(RingInMemory, EqualsElementwiseSum) {
  const auto [world, length] = GetParam();
  std::vector<RingAllreduce> ranks;
  std::vector<std::vector<float>> data;
  std::vector<std::deque<std::shared_ptr<const Message>>> inbox(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back(r, world, RingOptions{.chunk_elements = 3});
    data.push_back(input(r, length));
  }
  auto post = [&](const Outbox& out) {
    for (const auto& e : out)
      inbox.at(static_cast<std::size_t>(e.to)).push_back(e.message);
  };
  // Rank 0 starts last: its predecessor's chunks arrive before it is ready and are replayed.
  for (int r = world - 1; r >= 0; --r) {
    Outbox out;
    ranks[static_cast<std::size_t>(r)].start(0, data[static_cast<std::size_t>(r)], out);
    post(out);
  }
  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < world; ++r) {
      auto& q = inbox[static_cast<std::size_t>(r)];
      if (q.empty()) continue;
      Outbox out;
      ranks[static_cast<std::size_t>(r)].on_chunk(std::get<RingChunk>(*q.front()), out);
      q.pop_front();
      post(out);
      moved = true;
    }
  }
  const auto want = expected_sum(world, length);
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(ranks[static_cast<std::size_t>(r)].done()) << "rank " << r;
    EXPECT_EQ(data[static_cast<std::size_t>(r)], want) << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(WorldsAndLengths, RingInMemory,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 5, 6),
                                            ::testing::Values(std::size_t{0}, std::size_t{1},
                                                              std::size_t{5}, std::size_t{17},
                                                              std::size_t{1001})));

// Zero copy: chunks are sent as views of the memory they are read from and read only when their
// frame is written. Here every frame is encoded at the latest possible moment -- when it is
// delivered, in a random order over the links -- and a rank reuses its buffer the moment it is
// done (as the allreduce worker does: it scales the sum, then computes the next gradient into it)
// and starts the next round, while frames of its previous round still wait on the links. Every
// rank must still get the exact sums of both rounds: no region is changed while a send of it is
// in flight, whatever the interleaving.
class RingZeroCopy : public ::testing::TestWithParam<std::tuple<int, unsigned>> {};

TEST_P(RingZeroCopy, FramesInFlightSurviveReductionAndTheCallerReusingItsBuffer) {
  const auto [world, seed] = GetParam();
  constexpr std::size_t kLength = 1001;
  constexpr int kRounds = 3;
  const auto w = static_cast<std::size_t>(world);
  std::vector<RingAllreduce> ranks;
  std::vector<std::vector<float>> data(w);
  std::vector<int> round(w, 0);
  std::vector<std::vector<std::vector<float>>> results(w);
  std::vector<std::deque<std::shared_ptr<const Message>>> link(w);  // link[r]: r-1 -> r
  for (int r = 0; r < world; ++r)
    ranks.emplace_back(r, world, RingOptions{.chunk_elements = 7});
  auto post = [&](const Outbox& out) {
    for (const auto& e : out)
      link.at(static_cast<std::size_t>(e.to)).push_back(e.message);
  };
  auto finish_round = [&](std::size_t r) {
    results[r].push_back(data[r]);
    std::fill(data[r].begin(), data[r].end(), -12345.0f);  // the caller reuses its buffer
    if (++round[r] == kRounds) return;
    data[r] = input(static_cast<int>(r), kLength, round[r]);
    Outbox out;
    ranks[r].start(round[r], data[r], out);
    post(out);
  };
  for (std::size_t r = 0; r < w; ++r) {
    data[r] = input(static_cast<int>(r), kLength, 0);
    Outbox out;
    ranks[r].start(0, data[r], out);
    post(out);
    while (round[r] < kRounds && ranks[r].done())  // world 1: done at once
      finish_round(r);
  }
  std::mt19937 rng(seed);
  // Odd seeds make one link slow (served only when nothing else can move), so its sender runs
  // ahead -- finishes rounds, reuses its buffer -- while its frames wait.
  const std::size_t slow = seed % 2 ? rng() % w : w;
  while (true) {
    std::vector<std::size_t> busy;
    for (std::size_t r = 0; r < w; ++r)
      if (!link[r].empty() && r != slow) busy.push_back(r);
    if (busy.empty() && slow < w && !link[slow].empty()) busy.push_back(slow);
    if (busy.empty()) break;
    const std::size_t r = busy[rng() % busy.size()];
    const auto message = link[r].front();
    link[r].pop_front();
    // The bytes are read now, as a gather write that was queued all along would read them.
    const auto frame =
        std::make_shared<const std::vector<std::uint8_t>>(EncodedFrame(message).flatten());
    const auto body = std::span<const std::uint8_t>(*frame).subspan(kFrameHeaderBytes);
    Message received = decode_body(MessageType::kRingChunk, body, frame);
    ASSERT_TRUE(std::get<RingChunk>(received).viewed);
    Outbox out;
    ranks[r].on_chunk(std::move(std::get<RingChunk>(received)), out);
    post(out);
    if (round[r] < kRounds && ranks[r].done()) finish_round(r);
  }
  for (int k = 0; k < kRounds; ++k) {
    const auto want = expected_sum(world, kLength, k);
    for (std::size_t r = 0; r < w; ++r) {
      ASSERT_EQ(results[r].size(), static_cast<std::size_t>(kRounds)) << "rank " << r;
      EXPECT_EQ(results[r][static_cast<std::size_t>(k)], want) << "rank " << r << " round " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WorldsAndOrders, RingZeroCopy,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 6),
                                            ::testing::Values(1u, 2u, 3u, 4u, 5u)));

// Runs `body(rank, ring)` on `world` threads, each with a TcpRing linked to the others; returns
// each rank's exception (null if none).
std::vector<std::exception_ptr> run_ranks(int world, const std::function<void(int, TcpRing&)>& body,
                                          TcpRingOptions options) {
  std::vector<std::unique_ptr<TcpRing>> rings;
  std::vector<net::PeerAddress> addresses;
  for (int r = 0; r < world; ++r) {
    rings.push_back(std::make_unique<TcpRing>(r, world, options));
    addresses.push_back({"127.0.0.1", rings.back()->listen()});
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto& ring = *rings[static_cast<std::size_t>(r)];
        ring.connect(addresses);
        body(r, ring);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
      rings[static_cast<std::size_t>(r)].reset();
    });
  }
  for (auto& t : threads)
    t.join();
  return errors;
}

// Allreduces inputs of each length in turn on `world` linked TcpRings and checks every rank's
// result against the exact sum; returns each rank's shared-memory link count after the last one.
std::vector<int> expect_exact_sums(int world, const std::vector<std::size_t>& lengths,
                                   TcpRingOptions options) {
  std::vector<std::vector<std::vector<float>>> results(static_cast<std::size_t>(world));
  std::vector<int> shm_links(static_cast<std::size_t>(world), -1);
  const auto errors = run_ranks(
      world,
      [&](int r, TcpRing& ring) {
        int round = 0;
        for (std::size_t length : lengths) {
          auto data = input(r, length, round++);
          ring.allreduce(data);
          results[static_cast<std::size_t>(r)].push_back(std::move(data));
        }
        shm_links[static_cast<std::size_t>(r)] = ring.shared_memory_links();
      },
      options);
  for (int r = 0; r < world; ++r) {
    if (errors[static_cast<std::size_t>(r)])
      std::rethrow_exception(errors[static_cast<std::size_t>(r)]);
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      EXPECT_EQ(results[static_cast<std::size_t>(r)][k],
                expected_sum(world, lengths[k], static_cast<int>(k)))
          << "rank " << r << " length " << lengths[k];
    }
  }
  return shm_links;
}

class RingOverTcp : public ::testing::TestWithParam<int> {};

TEST_P(RingOverTcp, EqualsElementwiseSumForUnevenLengths) {
  const auto shm_links =
      expect_exact_sums(GetParam(), {1, 7, 1001, 100003},
                        TcpRingOptions{.ring = {.chunk_elements = 4096}, .timeout_s = 10});
  for (int links : shm_links)
    EXPECT_EQ(links, 0);
}

INSTANTIATE_TEST_SUITE_P(Worlds, RingOverTcp, ::testing::Values(1, 2, 3, 4, 5, 6));

// The same ring with its chunks in shared-memory slots (TcpRingOptions::shm_slots): chunks of
// 80 KB, above the size from which a Connection uses a slot, and few slots, so that chunks also
// fall back to TCP while every slot is held; the sums must be the same, bit for bit.
class RingOverSharedMemory : public ::testing::TestWithParam<int> {};

TEST_P(RingOverSharedMemory, EqualsElementwiseSumForUnevenLengths) {
  const auto shm_links = expect_exact_sums(
      GetParam(), {7, 100003, 400009},
      TcpRingOptions{.ring = {.chunk_elements = 20000}, .timeout_s = 10, .shm_slots = 2});
  // Negotiated while the first round ran: by its end at least the link from the predecessor has
  // read the offer or the reply (links the ring does not use may not have).
  for (std::size_t r = 0; r < shm_links.size(); ++r)
    EXPECT_GE(shm_links[r], 1) << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Worlds, RingOverSharedMemory, ::testing::Values(2, 3, 4));

TEST(RingOverTcp, PeerThatDisconnectsFailsTheOthersWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(
      3,
      [](int r, TcpRing& ring) {
        if (r == 2) return;  // links up, then leaves without taking part
        auto data = input(r, 1000);
        ring.allreduce(data);
      },
      TcpRingOptions{.timeout_s = 5});
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 5.0);
  EXPECT_FALSE(errors[2]);
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(errors[static_cast<std::size_t>(r)]) << "rank " << r << " did not fail";
    try {
      std::rethrow_exception(errors[static_cast<std::size_t>(r)]);
    } catch (const IoError& e) {
      // Rank 1 may still be linking when rank 0 gives up and closes: then rank 0 refuses it.
      const std::string what = e.what();
      EXPECT_TRUE(what.find("lost peer") != std::string::npos ||
                  what.find("refused") != std::string::npos)
          << what;
    }
  }
}

TEST(RingOverTcp, SilentPeerTimesOut) {
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(
      2,
      [](int r, TcpRing& ring) {
        if (r == 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2500));
          return;
        }
        auto data = input(r, 10);
        ring.allreduce(data);
      },
      TcpRingOptions{.timeout_s = 1});
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(errors[0]);
  EXPECT_LT(took, 4.0);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  }
}

// The strategy as roles, in random event orders: every worker ends with the same parameters, the
// server holds them, and the trajectory is ssgd's (same optimiser on the same mean gradient, up to
// the order of the float additions).
TEST(AllreduceRoles, WorkersStayIdenticalAndMatchSsgd) {
  const int n = 3;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 2};
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    testing::RoleSim ar(testing::job("allreduce", n, 0.1, 0.9), schedule);
    ar.start();
    ASSERT_TRUE(ar.run_random(seed));
    testing::RoleSim ps(testing::job("ssgd", n, 0.1, 0.9), schedule);
    ps.start();
    ASSERT_TRUE(ps.run_random(seed));
    EXPECT_EQ(ar.server->iteration(), schedule.total_iterations());
    EXPECT_EQ(ar.reports.rounds.size(), static_cast<std::size_t>(schedule.total_iterations()));
    for (int w = 0; w < n; ++w) {
      const auto p = ar.learners[static_cast<std::size_t>(w)]->parameters();
      EXPECT_EQ(std::vector<float>(p.begin(), p.end()), ar.params) << "worker " << w;
      EXPECT_EQ(ar.workers[static_cast<std::size_t>(w)]->iterations_done(),
                schedule.total_iterations());
    }
    for (std::size_t i = 0; i < ar.params.size(); ++i)
      EXPECT_NEAR(ar.params[i], ps.params[i], 1e-4) << i;
  }
}

TEST(BroadcastRoles, WorkersStayIdenticalAndMatchSsgd) {
  const int n = 4;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 3, .epochs = 2};
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    testing::RoleSim bc(testing::job("broadcast", n, 0.1, 0.9), schedule);
    bc.start();
    ASSERT_TRUE(bc.run_random(seed));
    testing::RoleSim ps(testing::job("ssgd", n, 0.1, 0.9), schedule);
    ps.start();
    ASSERT_TRUE(ps.run_random(seed));
    for (int w = 0; w < n; ++w) {
      const auto p = bc.learners[static_cast<std::size_t>(w)]->parameters();
      EXPECT_EQ(std::vector<float>(p.begin(), p.end()), bc.params) << "worker " << w;
    }
    // Same slots summed in the same order as the ssgd server: the very same bits.
    EXPECT_EQ(bc.params, ps.params);
  }
}

TEST(AllreduceRoles, DivergedModelsFailTheRun) {
  const Schedule schedule{.node_count = 2, .iterations_per_epoch = 2, .epochs = 1};
  std::vector<float> params(4, 0.0f);
  testing::ManualClock clock;
  AllreduceServer server(schedule, ServerContext{.parameters = params, .clock = &clock});
  Outbox out;
  server.on_start(out);
  server.on_message(0, AllreduceReport{.iteration = 1}, out);
  server.on_message(1, AllreduceReport{.iteration = 1}, out);
  server.on_message(
      0, AllreduceReport{.iteration = 2, .param_hash = 7, .params = std::vector<float>(4, 1.0f)},
      out);
  EXPECT_THROW(server.on_message(1, AllreduceReport{.iteration = 2, .param_hash = 8}, out),
               ProtocolError);
}

}  // namespace
}  // namespace psgd
