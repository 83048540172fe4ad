#pragma once
// ShmAllreduce: an allreduce for ranks that share one machine, through one POSIX shared-memory
// segment (`--psgd allreduce --allreduce_backend shm`).
//
// Why: psgd's ring sends 2(n-1) chunk messages per rank and iteration, and each hop needs the next
// rank to be running. When several workers share the cores of one machine (4 workers on 2 cores)
// every hop can wait for a context switch. Here each rank copies its buffer into its own input
// slot and goes to sleep; the rank that arrives last adds the n inputs in rank order into a result
// slot and wakes the others, who copy the result out. So a rank sleeps and wakes once per
// allreduce, and the sum is computed once. The result is the same bits on every rank (one rank
// computes it, all copy it) and the same whichever rank arrives last (the order of the additions
// is rank 0's + rank 1's + ...). It is not the ring's bits: the ring adds in another order.
//
// Segment layout: a header line, one line each for `attached`, `arrived`, the generation (a futex
// word), the failure word and the rank summing, one line per rank (its pid, its PID namespace and
// the length it called with), then n + 1 page-aligned slots of `capacity` floats: the inputs of
// ranks 0 .. n-1 and the result.
//
// Rounds: a rank reads the generation g, fills its input, and adds one to `arrived`. The rank that
// makes it n resets `arrived`, sums, stores g + 1 and wakes the sleepers (FUTEX_WAKE on the
// generation, shared between processes). A rank can enter round g + 1 only after it saw g + 1, and
// the last rank of round g + 1 is necessarily one that has finished reading round g's result, so
// one result slot suffices.
//
// Rendezvous: rank 0 creates the segment under `name` (O_EXCL); the others open it, retrying until
// rank 0 has published it (the header's `ready` word) or the timeout passes. The last rank to
// attach removes the name, so nothing is left in /dev/shm once every rank has joined; every rank
// removes it too when it is destroyed (a worker 0 that died before the others opened it). The
// client derives the name from the job's peer key (shm_allreduce_name), fresh for every start of a
// server.
//
// Failures never hang: a waiting rank wakes every 50 ms to check (after the generation) whether a
// rank left or failed (the failure word, set by a destructor that runs while the others may still
// need it, and by a rank that saw lengths differ), whether the process of a rank that has not
// arrived, or of the rank summing, is gone (kill(pid, 0), or a zombie; only for ranks in this
// process's PID namespace, where a pid means that process), whether its owner wants the wait to
// end (set_interrupt) and whether the timeout has passed since it arrived; each throws IoError
// naming the cause.
//
// Trust: every rank maps the segment writable, so it is only for the workers of one job that
// authenticated with its server, as the shared memory of links (network/tcp/shm_channel.h).
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/collective.h"

namespace psgd::net {

// The segment name for a job whose workers got `peer_key` from their server: a hash of it, so the
// key itself never appears in /dev/shm.
std::string shm_allreduce_name(std::span<const std::uint8_t> peer_key);

class ShmAllreduce final : public Collective {
 public:
  // Joins the allreduce of `world` ranks of buffers of at most `capacity` floats, as `rank`.
  // Rank 0 creates the segment (its memory reserved now, so a full /dev/shm is an error here);
  // the others wait up to `timeout_s` for it. `timeout_s` also bounds each wait for the other
  // ranks in allreduce_sum(). Throws IoError naming the cause.
  // `interrupt`, checked every 20 ms while a rank waits for rank 0's segment, ends that wait
  // with its reason (empty: go on); it is then kept for the allreduces' waits (set_interrupt).
  static std::unique_ptr<ShmAllreduce> join(const std::string& name, int rank, int world,
                                            std::size_t capacity, double timeout_s,
                                            std::function<std::string()> interrupt = {});
  ~ShmAllreduce() override;
  ShmAllreduce(const ShmAllreduce&) = delete;
  ShmAllreduce& operator=(const ShmAllreduce&) = delete;

  // Every rank calls it with a buffer of the same length, at most capacity(); on return it holds
  // the sum over the ranks.
  void allreduce_sum(std::span<float> data) override;
  // Copies `in` into this rank's slot and the scaled sum straight into `out`.
  void allreduce_scaled(std::span<const float> in, std::span<float> out, float scale) override;
  std::string name() const override { return "shm"; }
  // None: the gradients never leave the machine's memory.
  std::uint64_t peer_bytes(std::uint64_t, int) const override { return 0; }
  // Checked with the others every 50 ms while this rank waits: a non-empty answer ends the wait
  // with that reason (the client's: its server hung up, so the run is over).
  void set_interrupt(std::function<std::string()> check) { interrupt_ = std::move(check); }
  bool interruptible() const override { return static_cast<bool>(interrupt_); }
  std::size_t capacity() const { return capacity_; }
  int rank() const { return rank_; }

 private:
  ShmAllreduce(std::string name, int rank, int world, std::size_t capacity, double timeout_s,
               void* base, std::size_t mapped);
  struct Layout;
  void wait_for_round(std::uint32_t generation);
  // Records the first failure (why, which rank) for every rank to report, and wakes them.
  void fail_all(std::uint32_t why, int who);

  std::string name_;
  int rank_;
  int world_;
  std::size_t capacity_;
  double timeout_s_;
  std::uint8_t* base_;
  std::size_t mapped_;
  std::function<std::string()> interrupt_;
  std::uint64_t pid_ns_ = 0;  // this process's PID namespace (pids of others are checked only
                              // when they are in the same one)
};

}  // namespace psgd::net
