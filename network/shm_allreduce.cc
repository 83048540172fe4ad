// The shared-memory allreduce (its protocol and layout: shm_allreduce.h). About 410 lines: joining,
// the round and the wait with its liveness checks all read and write one segment layout, and are
// read best together.
#include "network/shm_allreduce.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "network/shm_pages.h"

namespace psgd::net {
namespace {

constexpr std::uint64_t kMagic = 0x3152414D48534750;  // "PGSHMAR1" read as little-endian
constexpr std::uint32_t kVersion = 2;
using shm::kLine;
using shm::kPage;
using shm::round_up;
constexpr int kMaxWorld = 4096;
constexpr std::size_t kBlock = 8192;  // floats summed at a time, so the sum stays in the cache

// Failure reasons (the failure word).
constexpr std::uint32_t kLeft = 1;     // `who` left while the others may still need it
constexpr std::uint32_t kLengths = 2;  // the ranks called with different lengths
constexpr std::uint32_t kGone = 3;     // `who`'s process is gone

struct Top {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t world;
  std::uint64_t capacity;
  std::uint32_t ready;  // set (release) by rank 0 once the fields above are written
};

struct RankLine {
  std::int32_t pid;      // 0 until the rank attached
  std::uint32_t round;   // the generation it arrived at last, plus one (0: none yet)
  std::uint64_t length;  // the length of its last call
  std::uint64_t pid_ns;  // its PID namespace (/proc/self/ns/pid's inode; 0: unknown)
};

// This process's PID namespace: a pid names a process only inside its own (containers that share
// /dev/shm may not share one), so only the pids of ranks in ours are checked.
std::uint64_t pid_namespace() {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

template <class T>
std::atomic_ref<T> at(std::uint8_t* p) {
  return std::atomic_ref<T>(*reinterpret_cast<T*>(p));
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The process `pid` exited (or is a zombie nobody reaped).
bool process_gone(std::int32_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  const char state = line[close + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace

// Where everything lies in the segment.
struct ShmAllreduce::Layout {
  static constexpr std::size_t kAttached = 1 * kLine;
  static constexpr std::size_t kArrived = 2 * kLine;
  static constexpr std::size_t kGeneration = 3 * kLine;
  static constexpr std::size_t kFailure = 4 * kLine;  // who << 32 | why (0: none)
  static constexpr std::size_t kSummer = 5 * kLine;   // the rank summing the round, plus one
  static constexpr std::size_t kRanks = 6 * kLine;

  static std::size_t data(int world) { return round_up(kRanks + world * kLine, kPage); }
  static std::size_t stride(std::size_t capacity) { return round_up(capacity * 4, kPage); }
  static std::size_t bytes(int world, std::size_t capacity) {
    return data(world) + (static_cast<std::size_t>(world) + 1) * stride(capacity);
  }
};

std::string shm_allreduce_name(std::span<const std::uint8_t> peer_key) {
  static constexpr char kLabel[] = "psgd shm allreduce";
  std::vector<std::uint8_t> in(kLabel, kLabel + sizeof kLabel);
  in.insert(in.end(), peer_key.begin(), peer_key.end());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  ::SHA256(in.data(), in.size(), digest);
  std::string name = "/psgd-ar-";
  for (int i = 0; i < 12; ++i)
    name += fmt::format("{:02x}", digest[i]);
  return name;
}

ShmAllreduce::ShmAllreduce(std::string name, int rank, int world, std::size_t capacity,
                           double timeout_s, void* base, std::size_t mapped)
    : name_(std::move(name)),
      rank_(rank),
      world_(world),
      capacity_(capacity),
      timeout_s_(timeout_s),
      base_(static_cast<std::uint8_t*>(base)),
      mapped_(mapped) {}

std::unique_ptr<ShmAllreduce> ShmAllreduce::join(const std::string& name, int rank, int world,
                                                 std::size_t capacity, double timeout_s,
                                                 std::function<std::string()> interrupt) {
  if (world < 1 || world > kMaxWorld || rank < 0 || rank >= world || capacity == 0 ||
      capacity > (std::size_t{1} << 32)) {
    throw IoError(fmt::format("allreduce (shm): rank {} of {} with {} values is not a group", rank,
                              world, capacity));
  }
  const std::size_t bytes = Layout::bytes(world, capacity);
  const double deadline = now_s() + timeout_s;
  void* base = MAP_FAILED;
  std::size_t mapped = bytes;
  if (rank == 0) {
    ::shm_unlink(name.c_str());  // a segment of the same name is a leftover, never a live one
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
      throw IoError(
          fmt::format("allreduce (shm): cannot create {}: {}", name, std::strerror(errno)));
    }
    // Reserve the pages now: a tmpfs that runs full mid-run would raise SIGBUS.
    if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) {
      ::close(fd);
      ::shm_unlink(name.c_str());
      throw IoError(fmt::format(
          "allreduce (shm): cannot reserve {:.1f} MiB in /dev/shm for {} workers' gradients: {}",
          static_cast<double>(bytes) / (1 << 20), world, std::strerror(e)));
    }
    base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int map_errno = errno;
    ::close(fd);
    if (base == MAP_FAILED) {
      ::shm_unlink(name.c_str());
      throw IoError(
          fmt::format("allreduce (shm): cannot map {}: {}", name, std::strerror(map_errno)));
    }
    auto* top = static_cast<Top*>(base);
    top->magic = kMagic;
    top->version = kVersion;
    top->world = static_cast<std::uint32_t>(world);
    top->capacity = capacity;
    std::atomic_ref<std::uint32_t>(top->ready).store(1, std::memory_order_release);
  } else {
    // Rank 0 may not have created it yet, or not finished: retry until it is published.
    bool seen = false;  // the name existed: a rank giving up removes it (below)
    auto give_up = [&](const std::string& why) {
      // Worker 0 made the name but never published the segment (killed while reserving it):
      // the run is over for this rank, and nobody else would remove it. Each run has its own name.
      if (seen) ::shm_unlink(name.c_str());
      throw IoError(why);
    };
    for (;;) {
      const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
      if (fd >= 0) {
        seen = true;
        // Map what is there (at least the header's page) to read the header, whatever its size.
        struct stat st {};
        std::size_t size = 0;
        if (::fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) >= kPage) {
          size = static_cast<std::size_t>(st.st_size);
          base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        }
        ::close(fd);
        if (base != MAP_FAILED) {
          auto* top = static_cast<Top*>(base);
          if (std::atomic_ref<std::uint32_t>(top->ready).load(std::memory_order_acquire) == 1) {
            if (top->magic != kMagic || top->version != kVersion ||
                top->world != static_cast<std::uint32_t>(world) || top->capacity != capacity ||
                size < bytes) {
              const std::string why = fmt::format(
                  "allreduce (shm): worker 0's segment {} is for {} workers of {} values, this "
                  "worker expected {} of {}: the workers disagree about the job",
                  name, top->world, top->capacity, world, capacity);
              ::munmap(base, size);
              throw IoError(why);
            }
            mapped = size;
            break;
          }
          ::munmap(base, size);
          base = MAP_FAILED;
        }
      } else if (errno != ENOENT) {
        throw IoError(
            fmt::format("allreduce (shm): cannot open {}: {}", name, std::strerror(errno)));
      }
      if (interrupt) {
        if (const std::string why = interrupt(); !why.empty()) give_up("allreduce (shm): " + why);
      }
      if (now_s() > deadline) {
        if (seen) {
          give_up(
              fmt::format("allreduce (shm): worker 0 made {} but did not finish it within {:g} "
                          "s (it stopped or died while reserving it)",
                          name, timeout_s));
        }
        give_up(fmt::format(
            "allreduce (shm): worker 0's shared memory {} did not appear within {:g} s. "
            "--allreduce_backend shm needs every worker on worker 0's machine (and its /dev/shm); "
            "workers on several machines use --allreduce_backend ring",
            name, timeout_s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::unique_ptr<ShmAllreduce> self(
      new ShmAllreduce(name, rank, world, capacity, timeout_s, base, mapped));
  self->interrupt_ = std::move(interrupt);
  self->pid_ns_ = pid_namespace();
  std::uint8_t* line = self->base_ + Layout::kRanks + static_cast<std::size_t>(rank) * kLine;
  at<std::uint64_t>(line + offsetof(RankLine, pid_ns))
      .store(pid_namespace(), std::memory_order_relaxed);
  at<std::int32_t>(line + offsetof(RankLine, pid))
      .store(static_cast<std::int32_t>(::getpid()), std::memory_order_release);
  const auto attached =
      at<std::uint32_t>(self->base_ + Layout::kAttached).fetch_add(1, std::memory_order_acq_rel);
  if (static_cast<int>(attached) + 1 == world) ::shm_unlink(name.c_str());
  return self;
}

ShmAllreduce::~ShmAllreduce() {
  // The others may be waiting for this rank (a worker that gives up), or not (the end of a run,
  // when every rank has seen the last result): a waiter looks at the generation first, so the
  // mark only ends waits that could never finish.
  fail_all(kLeft, rank_);
  // Every rank removes the name (idempotent; each run has a fresh one), so a segment whose worker 0
  // died before the others had opened it goes with the first of them to leave.
  ::shm_unlink(name_.c_str());
  ::munmap(base_, mapped_);
}

void ShmAllreduce::fail_all(std::uint32_t why, int who) {
  std::uint64_t none = 0;
  const std::uint64_t word = std::uint64_t{static_cast<std::uint32_t>(who)} << 32 | why;
  if (!at<std::uint64_t>(base_ + Layout::kFailure)
           .compare_exchange_strong(none, word, std::memory_order_acq_rel)) {
    return;  // the first failure is the one every rank reports
  }
  ::syscall(SYS_futex, base_ + Layout::kGeneration, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void ShmAllreduce::allreduce_sum(std::span<float> data) {
  allreduce_scaled(data, data, 1.0f);
}

void ShmAllreduce::allreduce_scaled(std::span<const float> data, std::span<float> out,
                                    float scale) {
  if (data.size() > capacity_) {
    throw IoError(fmt::format("allreduce (shm): {} values, the group was made for {}", data.size(),
                              capacity_));
  }
  if (out.size() != data.size()) {
    throw IoError(fmt::format("allreduce (shm): {} values in, {} out", data.size(), out.size()));
  }
  if (world_ == 1) {
    if (out.data() != data.data()) std::copy(data.begin(), data.end(), out.begin());
    if (scale != 1.0f) {
      for (float& x : out)
        x *= scale;
    }
    return;
  }
  const std::size_t stride = Layout::stride(capacity_);
  std::uint8_t* slots = base_ + Layout::data(world_);
  auto slot = [&](int r) { return reinterpret_cast<float*>(slots + r * stride); };
  auto generation = at<std::uint32_t>(base_ + Layout::kGeneration);
  std::uint8_t* mine = base_ + Layout::kRanks + static_cast<std::size_t>(rank_) * kLine;

  const std::uint32_t g = generation.load(std::memory_order_acquire);
  std::memcpy(slot(rank_), data.data(), data.size_bytes());
  at<std::uint64_t>(mine + offsetof(RankLine, length))
      .store(data.size(), std::memory_order_relaxed);
  at<std::uint32_t>(mine + offsetof(RankLine, round)).store(g + 1, std::memory_order_relaxed);
  auto arrived = at<std::uint32_t>(base_ + Layout::kArrived);
  if (static_cast<int>(arrived.fetch_add(1, std::memory_order_acq_rel)) + 1 == world_) {
    // Last to arrive: every input is in. Check the lengths, sum in rank order, publish.
    at<std::uint32_t>(base_ + Layout::kSummer)
        .store(static_cast<std::uint32_t>(rank_) + 1, std::memory_order_relaxed);
    for (int r = 0; r < world_; ++r) {
      const auto length =
          at<std::uint64_t>(base_ + Layout::kRanks + r * kLine + offsetof(RankLine, length))
              .load(std::memory_order_relaxed);
      if (length != data.size()) {
        fail_all(kLengths, rank_);
        throw IoError(
            fmt::format("allreduce (shm): worker {} called with {} values and worker {} with {}", r,
                        length, rank_, data.size()));
      }
    }
    float* result = slot(world_);
    for (std::size_t begin = 0; begin < data.size(); begin += kBlock) {
      const std::size_t n = std::min(kBlock, data.size() - begin);
      const float* first = slot(0) + begin;
      float* sum = result + begin;
      std::copy(first, first + n, sum);
      for (int r = 1; r < world_; ++r) {
        const float* in = slot(r) + begin;
        for (std::size_t i = 0; i < n; ++i)
          sum[i] += in[i];
      }
    }
    arrived.store(0, std::memory_order_relaxed);
    generation.store(g + 1, std::memory_order_release);
    ::syscall(SYS_futex, base_ + Layout::kGeneration, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  } else {
    wait_for_round(g);
  }
  const float* sum = slot(world_);
  if (scale == 1.0f) {
    std::memcpy(out.data(), sum, out.size_bytes());
  } else {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = sum[i] * scale;
  }
}

void ShmAllreduce::wait_for_round(std::uint32_t g) {
  auto generation = at<std::uint32_t>(base_ + Layout::kGeneration);
  const double deadline = now_s() + timeout_s_;
  const timespec slice{.tv_sec = 0, .tv_nsec = 50'000'000};
  for (;;) {
    if (generation.load(std::memory_order_acquire) != g) return;
    ::syscall(SYS_futex, base_ + Layout::kGeneration, FUTEX_WAIT, g, &slice, nullptr, 0);
    if (generation.load(std::memory_order_acquire) != g) return;
    const std::uint64_t failure =
        at<std::uint64_t>(base_ + Layout::kFailure).load(std::memory_order_acquire);
    // A round that completed while this rank looked elsewhere is not failed by a later mark.
    if (failure != 0 && generation.load(std::memory_order_acquire) != g) return;
    const auto why = static_cast<std::uint32_t>(failure);
    const auto who = static_cast<std::uint32_t>(failure >> 32);
    if (why == kLeft) {
      throw IoError(fmt::format(
          "allreduce (shm): worker {} left the group (it gave up, or its run had ended)", who));
    }
    if (why == kLengths) {
      throw IoError("allreduce (shm): the workers called the allreduce with different lengths");
    }
    if (why == kGone) {
      throw IoError(fmt::format("allreduce (shm): worker {}'s process is gone", who));
    }
    // Whose process to look at: the ranks that have not arrived, or, when all have, the one
    // summing (it may have died in the sum).
    std::vector<int> missing;
    for (int r = 0; r < world_; ++r) {
      std::uint8_t* line = base_ + Layout::kRanks + static_cast<std::size_t>(r) * kLine;
      if (at<std::uint32_t>(line + offsetof(RankLine, round)).load() != g + 1) missing.push_back(r);
    }
    std::vector<int> watched = missing;
    if (missing.empty()) {
      // Every rank, the recorded summer first: a last arrival killed before it recorded itself
      // leaves the previous round's summer there.
      const auto summer = at<std::uint32_t>(base_ + Layout::kSummer).load();
      if (summer > 0) watched.push_back(static_cast<int>(summer) - 1);
      for (int r = 0; r < world_; ++r) {
        if (r != rank_ && r != static_cast<int>(summer) - 1) watched.push_back(r);
      }
    }
    for (int r : watched) {
      std::uint8_t* line = base_ + Layout::kRanks + static_cast<std::size_t>(r) * kLine;
      const std::int32_t pid = at<std::int32_t>(line + offsetof(RankLine, pid)).load();
      const std::uint64_t ns = at<std::uint64_t>(line + offsetof(RankLine, pid_ns)).load();
      if (pid > 0 && ns != 0 && ns == pid_ns_ && process_gone(pid)) {
        // It may have finished this round and left since the generation was read.
        if (generation.load(std::memory_order_acquire) != g) return;
        fail_all(kGone, r);  // tell the others at once rather than on their next check
        throw IoError(fmt::format("allreduce (shm): worker {}'s process (pid {}) is gone", r, pid));
      }
    }
    if (interrupt_) {
      if (const std::string why = interrupt_(); !why.empty()) {
        throw IoError("allreduce (shm): " + why);
      }
    }
    if (now_s() > deadline) {
      if (missing.empty()) {
        throw IoError(fmt::format("allreduce (shm): waited {:g} s for worker {} to finish the sum",
                                  timeout_s_, watched.empty() ? -1 : watched.front()));
      }
      throw IoError(fmt::format("allreduce (shm): waited {:g} s for worker(s) {} to arrive",
                                timeout_s_, fmt::join(missing, ", ")));
    }
  }
}

}  // namespace psgd::net
