#include "network/shm_allreduce.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace psgd::net {
namespace {

// A fresh segment name per test (the client's come from the peer key).
std::string fresh_name() {
  std::random_device rd;
  const std::vector<std::uint8_t> key{
      static_cast<std::uint8_t>(rd()),       static_cast<std::uint8_t>(rd()),
      static_cast<std::uint8_t>(rd()),       static_cast<std::uint8_t>(rd()),
      static_cast<std::uint8_t>(::getpid()), static_cast<std::uint8_t>(::getpid() >> 8)};
  return shm_allreduce_name(key);
}

// Values spanning 2^-20 .. 2^20, so the order of the additions shows in the bits.
std::vector<float> values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<float> v(n);
  for (auto& x : v)
    x = std::ldexp(mantissa(rng), exponent(rng));
  return v;
}

// Runs `body(rank)` on `world` threads, each with its own ShmAllreduce; returns each rank's error
// (empty: none).
std::vector<std::string> run_ranks(const std::string& name, int world, std::size_t capacity,
                                   double timeout_s,
                                   const std::function<void(int, ShmAllreduce&)>& body) {
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto group = ShmAllreduce::join(name, r, world, capacity, timeout_s);
        body(r, *group);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  return errors;
}

TEST(ShmAllreduce, EveryRankGetsTheRankOrderSumWhateverOrderTheyArriveIn) {
  constexpr int kWorld = 4;
  constexpr std::size_t kCount = 20'011;  // not a multiple of the summing block
  constexpr int kRounds = 40;
  std::vector<std::vector<std::vector<float>>> results(kWorld);
  const auto errors = run_ranks(fresh_name(), kWorld, kCount, 10, [&](int r, ShmAllreduce& g) {
    std::mt19937 delays(static_cast<unsigned>(r) + 7);
    for (int round = 0; round < kRounds; ++round) {
      auto v = values(kCount, static_cast<unsigned>(round * kWorld + r));
      // A different rank arrives last from round to round.
      std::this_thread::sleep_for(std::chrono::microseconds(delays() % 2000));
      g.allreduce_sum(v);
      results[static_cast<std::size_t>(r)].push_back(std::move(v));
    }
  });
  for (const auto& e : errors)
    ASSERT_EQ(e, "");
  for (int round = 0; round < kRounds; ++round) {
    std::vector<float> expected = values(kCount, static_cast<unsigned>(round * kWorld));
    for (int r = 1; r < kWorld; ++r) {
      const auto in = values(kCount, static_cast<unsigned>(round * kWorld + r));
      for (std::size_t i = 0; i < kCount; ++i)
        expected[i] += in[i];
    }
    for (int r = 0; r < kWorld; ++r) {
      const auto& got = results[static_cast<std::size_t>(r)][static_cast<std::size_t>(round)];
      ASSERT_EQ(std::memcmp(got.data(), expected.data(), kCount * sizeof(float)), 0)
          << "rank " << r << ", round " << round;
    }
  }
}

// allreduce_scaled: the bits of allreduce_sum() then the product, with `in` left as it was; the
// Collective default (copy, sum, scale) gives the same bits.
TEST(ShmAllreduce, TheScaledSumIsTheSumTimesTheScaleAndLeavesTheInputAlone) {
  constexpr int kWorld = 3;
  constexpr std::size_t kCount = 9'000;
  const float scale = 1.0f / 3.0f;
  std::vector<std::vector<float>> scaled(kWorld), summed(kWorld), inputs(kWorld);
  const auto errors = run_ranks(fresh_name(), kWorld, kCount, 10, [&](int r, ShmAllreduce& g) {
    const auto i = static_cast<std::size_t>(r);
    inputs[i] = values(kCount, 100 + static_cast<unsigned>(r));
    const std::vector<float> before = inputs[i];
    scaled[i].resize(kCount);
    g.allreduce_scaled(inputs[i], scaled[i], scale);
    EXPECT_EQ(inputs[i], before);
    summed[i] = inputs[i];
    g.Collective::allreduce_scaled(before, summed[i], scale);  // the default: copy, sum, scale
  });
  for (const auto& e : errors)
    ASSERT_EQ(e, "");
  for (int r = 0; r < kWorld; ++r) {
    const auto i = static_cast<std::size_t>(r);
    ASSERT_EQ(std::memcmp(scaled[i].data(), summed[i].data(), kCount * sizeof(float)), 0) << r;
    ASSERT_EQ(std::memcmp(scaled[i].data(), scaled[0].data(), kCount * sizeof(float)), 0) << r;
  }
  std::vector<float> expected = values(kCount, 100);
  for (int r = 1; r < kWorld; ++r) {
    const auto in = values(kCount, 100 + static_cast<unsigned>(r));
    for (std::size_t i = 0; i < kCount; ++i)
      expected[i] += in[i];
  }
  for (auto& x : expected)
    x *= scale;
  EXPECT_EQ(std::memcmp(scaled[0].data(), expected.data(), kCount * sizeof(float)), 0);
}

TEST(ShmAllreduce, NothingIsLeftInDevShmOnceEveryRankJoined) {
  const std::string name = fresh_name();
  const std::filesystem::path file = "/dev/shm" + name;
  auto a = ShmAllreduce::join(name, 0, 2, 100, 5);
  EXPECT_TRUE(std::filesystem::exists(file));
  auto b = ShmAllreduce::join(name, 1, 2, 100, 5);
  EXPECT_FALSE(std::filesystem::exists(file));
  std::vector<float> x(100, 1.5f), y(100, 2.0f);
  std::thread t([&] { b->allreduce_sum(y); });
  a->allreduce_sum(x);
  t.join();
  EXPECT_EQ(x, std::vector<float>(100, 3.5f));
  EXPECT_EQ(y, x);
}

TEST(ShmAllreduce, TheNameHidesThePeerKeyAndDiffersPerKey) {
  const std::vector<std::uint8_t> k1(32, 0xab), k2(32, 0xac);
  const std::string n1 = shm_allreduce_name(k1);
  EXPECT_EQ(n1.rfind("/psgd-ar-", 0), 0u);
  EXPECT_EQ(n1.find("abab"), std::string::npos);
  EXPECT_NE(n1, shm_allreduce_name(k2));
  EXPECT_EQ(n1, shm_allreduce_name(k1));
}

TEST(ShmAllreduce, ARankThatLeavesEndsTheOthersWaitAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto errors = run_ranks(fresh_name(), 3, 64, 30, [](int r, ShmAllreduce& g) {
    std::vector<float> v(64, 1.0f);
    g.allreduce_sum(v);  // one round together
    if (r == 2) return;  // then rank 2 gives up: its group is destroyed
    g.allreduce_sum(v);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(errors[0].find("worker 2 left the group"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("worker 2 left the group"), std::string::npos) << errors[1];
  EXPECT_EQ(errors[2], "");
}

TEST(ShmAllreduce, AWaitEndsAtTheTimeoutNamingWhoDidNotArrive) {
  const std::string name = fresh_name();
  auto a = ShmAllreduce::join(name, 0, 3, 8, 0.3);
  auto b = ShmAllreduce::join(name, 1, 3, 8, 0.3);
  auto c = ShmAllreduce::join(name, 2, 3, 8, 0.3);
  std::vector<float> x(8), y(8);
  std::string error_b;
  std::thread t([&] {
    try {
      b->allreduce_sum(y);
    } catch (const IoError& e) {
      error_b = e.what();
    }
  });
  try {
    a->allreduce_sum(x);
    ADD_FAILURE() << "no timeout";
  } catch (const IoError& e) {
    // "worker(s) 1, 2" when b's thread started late: the list is of who had not arrived.
    EXPECT_NE(std::string(e.what()).find("2 to arrive"), std::string::npos) << e.what();
  }
  t.join();
  EXPECT_NE(error_b.find("worker(s) 2"), std::string::npos) << error_b;
}

TEST(ShmAllreduce, AWorkerWhoseProcessDiesIsNamed) {
  const std::string name = fresh_name();
  auto a = ShmAllreduce::join(name, 0, 2, 16, 30);
  const pid_t child = ::fork();
  if (child == 0) {
    // Joins, then dies without a word (no destructor runs).
    try {
      auto b = ShmAllreduce::join(name, 1, 2, 16, 5);
      b.release();
    } catch (...) {
    }
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  std::vector<float> x(16);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    a->allreduce_sum(x);  // the child is a zombie until reaped below: still "gone"
    ADD_FAILURE() << "the dead worker was not seen";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 1's process"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  int status = 0;
  ::waitpid(child, &status, 0);
}

// Worker 0 dies right after making the segment, before the others have all opened it: the first
// of them to leave removes the name, so nothing stays in /dev/shm.
TEST(ShmAllreduce, ASegmentWhoseWorker0DiedGoesWithTheFirstWorkerToLeave) {
  const std::string name = fresh_name();
  const std::filesystem::path file = "/dev/shm" + name;
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      ShmAllreduce::join(name, 0, 3, 16, 5).release();  // no destructor: as if killed
    } catch (...) {
    }
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  {
    auto b = ShmAllreduce::join(name, 1, 3, 16, 5);  // waits for the child to make it
    EXPECT_TRUE(std::filesystem::exists(file));      // worker 2 has not opened it yet
    std::vector<float> x(16);
    EXPECT_THROW(b->allreduce_sum(x), IoError);  // worker 0's process is gone
  }
  EXPECT_FALSE(std::filesystem::exists(file));
  int status = 0;
  ::waitpid(child, &status, 0);
}

// Worker 0 made the name but never published the segment (killed while reserving the pages): a
// worker that gives up waiting for it removes the name, which nobody else would.
TEST(ShmAllreduce, ASegmentWorker0NeverFinishedGoesWithTheWorkerThatGivesUp) {
  const std::string name = fresh_name();
  const std::filesystem::path file = "/dev/shm" + name;
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);  // a header page, never marked ready
  ::close(fd);
  try {
    ShmAllreduce::join(name, 1, 2, 16, 0.2);
    ADD_FAILURE() << "joined a segment worker 0 never finished";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("did not finish it"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(file));
}

TEST(ShmAllreduce, JoiningWithoutWorker0OrWithAnotherJobSaysSo) {
  const std::string name = fresh_name();
  try {
    ShmAllreduce::join(name, 1, 2, 16, 0.2);
    ADD_FAILURE() << "joined without worker 0";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("needs every worker on worker 0's machine"),
              std::string::npos)
        << e.what();
  }
  auto a = ShmAllreduce::join(name, 0, 2, 16, 5);
  try {
    ShmAllreduce::join(name, 1, 2, 17, 5);
    ADD_FAILURE() << "joined a group of another size";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("disagree about the job"), std::string::npos) << e.what();
  }
}

// A rank waiting for worker 0's segment stops when its owner says the run is over (the client:
// worker 0 gave up before it made the segment), not at the timeout.
TEST(ShmAllreduce, AnInterruptEndsTheWaitForWorker0) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    ShmAllreduce::join(fresh_name(), 1, 2, 16, 60, [&]() -> std::string {
      return std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(100) ? "run over"
                                                                                    : "";
    });
    ADD_FAILURE() << "joined without worker 0";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "allreduce (shm): run over");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(ShmAllreduce, DifferentLengthsFailEveryRank) {
  const auto errors = run_ranks(fresh_name(), 2, 32, 10, [](int r, ShmAllreduce& g) {
    std::vector<float> v(r == 0 ? 32 : 31, 1.0f);
    g.allreduce_sum(v);
  });
  // The rank that sums (whichever arrived last) names both lengths; the other learns that they
  // differed.
  const std::string both = errors[0] + " | " + errors[1];
  EXPECT_NE(errors[0], "");
  EXPECT_NE(errors[1], "");
  const bool named =
      both.find("worker 0 called with 32 values and worker 1 with 31") != std::string::npos ||
      both.find("worker 1 called with 31 values and worker 0 with 32") != std::string::npos;
  EXPECT_TRUE(named) << both;
  EXPECT_NE(both.find("different lengths"), std::string::npos) << both;
  std::vector<float> too_long(33);
  auto one = ShmAllreduce::join(fresh_name(), 0, 1, 32, 1);
  EXPECT_THROW(one->allreduce_sum(too_long), IoError);
}

}  // namespace
}  // namespace psgd::net
