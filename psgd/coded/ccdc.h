#pragma once
// ccdc: coded distributed computing of the gradient sum over the peer mesh (`--psgd broadcast
// --codec ccdc --redundancy r`), the original Parallel-SGD platform's `ccdc` codec.
//
// Reference: S. Li, M. A. Maddah-Ali, Q. Yu, A. S. Avestimehr, "A Fundamental Tradeoff Between
// Computation and Communication in Distributed Computing", IEEE Trans. Inf. Theory 64(1), 2018
// (Coded Distributed Computing, CDC).
//
// Placement (nn::place_blocks): one data block per r-subset of the n workers, C(n, r) blocks, each
// held by its r workers; a worker holds C(n−1, r−1) blocks. Every iteration a worker computes one
// batch gradient g_b per block b it holds (per-block batch streams, nn::TrainerOptions block_ids,
// so every holder of b computes the same g_b bit for bit). The update is the mean of the C(n, r)
// block gradients, so one iteration covers C(n, r) batches and an epoch (one pass over the
// training set) has ceil(N / (C(n, r) · batch_size)) iterations; each sample is computed r times
// (the paper's computation load r).
//
// Map, Shuffle, Reduce as in the paper, with one Reduce function per worker: worker k reduces
// slice k of the gradient vector (n contiguous slices). What worker k needs from a block b it
// lacks is slice_k(g_b); it holds every other block's slice already.
//   Coded shuffle: for every (r+1)-subset S and every j in S, the r workers of S other than j
//   each lack exactly one block of S, namely S\{k} for receiver k, which j holds. j cuts
//   slice_k(g_{S\{k}}) into r pieces, indexed by the position of the holder in S\{k}, and sends
//   ONE message to the r others: the XOR of the fp32 bit patterns of its pieces for each k (each
//   zero-padded to the longest). Receiver k holds every other block S\{k'} (k' ≠ k, j), XORs
//   their pieces away — exactly, since XOR cancels bit for bit — and is left with j's piece of
//   what it lacks. After the r messages of S that k receives, it has its whole slice of S\{k}.
//   Reduce: worker k sums slice k of all C(n, r) block gradients in block order.
//   All-gather: worker k sends its reduced slice to the n−1 others. Every element of the sum was
//   computed by one worker in block order, so every worker ends with the same bits (and the same
//   bits as summing whole gradients in block order): the models stay identical, which the server
//   checks with the parameter hash at every epoch end (psgd/allreduce.h, AllreduceServer).
// CcdcOptions::reduce_scatter = false is the exchange without Reduce functions: the coded shuffle
// carries whole block gradients (every worker recovers every block it lacks), no all-gather. It is
// the scheme's textbook form and the baseline the tests and the README figures compare against.
//
// Communication, in fp32 elements per worker and iteration, d = gradient length (frame headers
// and message fields on top; both are what peer_bytes reports, measured from the frames):
//   broadcast plain:               unicast (n−1)·d                 multicast d
//   ccdc (reduce_scatter):         unicast (C(n−1,r) + n−1)·d/n    multicast (C(n−1,r)/r + 1)·d/n
//   ccdc, whole blocks:            unicast C(n−1,r)·d              multicast C(n−1,r)·d/r
//   uncoded exchange of blocks:    unicast C(n−1,r)·d              (each missing block sent once)
// Where the gain comes from: the coding gain of CDC is a MULTICAST gain — one coded message of
// d/r (or d/(n·r)) serves r receivers at once, so the multicast load is 1/r of the uncoded one
// (the paper's L(r) = (1/r)(1 − r/n), normalised by the n·C(n,r) intermediate values). Over TCP a
// multicast is r unicasts, which cancels that gain exactly: the unicast bytes of the coded shuffle
// equal those of sending every missing block once uncoded. The unicast saving against broadcast
// comes from the Reduce functions (aggregation): each worker only needs 1/n of the vector from
// the shuffle and the all-gather moves finished sums, not per-block gradients. At n = 4, r = 2:
// ccdc 1.5·d unicast, 0.625·d multicast; broadcast 3·d and d; whole-block ccdc 3·d and 1.5·d.
// Sending partial sums in the shuffle instead of coded pieces (worker k receives one sum of
// slice_k over a cover of the blocks it lacks from each of n−r senders, (n−r)·d/n) would cut the
// unicast shuffle further but loses the multicast gain; ccdc keeps the paper's coded shuffle.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "core/optimizer.h"
#include "psgd/context.h"

namespace psgd {

struct CcdcOptions {
  int redundancy = 2;          // r: workers holding each block, 1 <= r < node_count
  bool reduce_scatter = true;  // false: shuffle whole blocks, no all-gather (see above)
};

// C(n, k), or cap + 1 when larger than cap.
std::uint64_t binomial_capped(int n, int k, std::uint64_t cap);

// Refuses a ccdc layout that cannot run: r outside 1..n−1, or more than 100,000 (r+1)-subsets
// (each is a message per worker and iteration). Throws ConfigError naming the flags.
void check_ccdc_layout(int node_count, int redundancy);

// The combinatorics of the scheme for n workers, redundancy r and gradients of d elements.
class CcdcLayout {
 public:
  struct Range {
    std::size_t begin = 0, end = 0;
    std::size_t size() const { return end - begin; }
  };

  CcdcLayout(int node_count, int redundancy, std::size_t length, bool reduce_scatter);

  int node_count() const { return n_; }
  int redundancy() const { return r_; }
  std::size_t length() const { return d_; }
  // Blocks: the r-subsets in lexicographic order (the order of nn::place_blocks).
  int blocks() const { return static_cast<int>(blocks_.size()); }
  const std::vector<int>& block(int b) const { return blocks_[static_cast<std::size_t>(b)]; }
  const std::vector<int>& blocks_of(int worker) const;
  // Groups: the (r+1)-subsets in lexicographic order.
  int groups() const { return static_cast<int>(groups_.size()); }
  const std::vector<int>& group(int g) const { return groups_[static_cast<std::size_t>(g)]; }
  const std::vector<int>& groups_of(int worker) const;
  // The block of S \ {worker} (worker in group g).
  int block_without(int g, int worker) const;
  bool holds(int worker, int b) const;

  // What `receiver` needs of every block: its slice, or the whole vector.
  Range target(int receiver) const;
  // The piece of target(receiver) that `sender` codes for it, in block b (sender in b, receiver
  // not): piece number (position of sender in b) of r.
  Range piece(int b, int sender, int receiver) const;
  // Elements of the coded message `sender` sends in group g: its longest piece there.
  std::size_t coded_length(int g, int sender) const;

 private:
  int n_, r_;
  std::size_t d_;
  bool reduce_scatter_;
  std::vector<std::vector<int>> blocks_, groups_;
  std::map<std::vector<int>, int> block_index_;
  std::vector<std::vector<int>> blocks_of_, groups_of_;
};

// The worker role. The server is AllreduceServer (the orchestrator of every peer-to-peer
// strategy). Messages: CcdcCoded (coded shuffle), CcdcSlice (all-gather), AllreduceReport to the
// server with peer_bytes (every frame sent to a peer, as many times as it is sent) and
// multicast_bytes (each message counted once, whatever the number of receivers).
class CcdcWorker final : public WorkerRole {
 public:
  CcdcWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
             CcdcOptions options);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return iteration_; }
  // The optimiser's state (the same on every worker: they apply the same sums).
  std::vector<std::uint8_t> snapshot() const override { return optimiser_->snapshot(); }
  void restore(std::span<const std::uint8_t> state) override {
    if (!state.empty()) optimiser_->restore(state);
  }

 private:
  void send_coded(Outbox& out);
  void accept_coded(const CcdcCoded& m);  // refuses a malformed or duplicate one
  void decode(const CcdcCoded& m);
  WorkerAction progress(Outbox& out);
  void count_sent(const std::shared_ptr<const Message>& message, std::size_t receivers);

  WorkerContext ctx_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimiser_;
  CcdcOptions options_;
  CcdcLayout layout_;
  bool started_ = false;
  bool computed_ = false;  // this iteration's block gradients are here and the coded sent
  bool reduced_ = false;   // own slice reduced and sent
  std::int64_t iteration_ = 0;
  std::vector<int> local_;                     // block -> index in grads_ (-1: not held)
  std::vector<std::vector<float>> grads_;      // own block gradients, blocks_of(id) order
  std::vector<int> missing_;                   // block -> index in recovered_ (-1: held)
  std::vector<std::vector<float>> recovered_;  // target(id) of each block lacked
  int pieces_ = 0;                             // coded messages decoded this iteration
  int pieces_needed_ = 0;
  // Coded messages by iteration (this one and the next), and the (group, sender) pairs seen.
  std::map<std::int64_t, std::vector<CcdcCoded>> early_;
  std::map<std::int64_t, std::set<std::pair<std::int64_t, int>>> seen_;
  std::vector<bool> slice_in_;
  int slices_ = 0;
  std::vector<float> sum_;
  std::vector<std::uint32_t> scratch_;
  double loss_ = 0;
  std::int64_t samples_ = 0;
  PhaseTimes times_;
  std::uint64_t peer_bytes_ = 0;
  std::uint64_t multicast_bytes_ = 0;
  double wait_start_ = 0;
};

}  // namespace psgd
