#pragma once
// Ring allreduce as an event-driven state machine: the bandwidth-optimal reduce-scatter followed
// by an all-gather (Patarasuk and Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters
// of workstations"; the algorithm of Baidu's ring allreduce and of Horovod/NCCL rings).
//
// n ranks in a ring; rank r sends only to r+1 and receives only from r-1. The buffer is cut into
// n segments. In step s = 0 .. n-2 (reduce-scatter) rank r sends segment (r-s) mod n and adds the
// segment (r-1-s) mod n it receives into its own copy; after n-1 steps rank r holds the complete
// sum of segment (r+1) mod n. Steps n-1 .. 2n-3 (all-gather) pass the complete segments around
// the ring, each rank copying what it receives. Every rank sends and receives 2(n-1)/n of the
// buffer, independent of n.
//
// Pipelining: each segment is further cut into chunks, and a chunk is forwarded as soon as it has
// been reduced, so a chunk of step s+1 is on the wire while the next chunk of step s is being
// added. The driver's asynchronous sends overlap with the reduction of the following chunk.
//
// Zero copy: no chunk is serialised into a buffer of its own. A received chunk views its frame
// (RingChunk::view); a sent one views the memory it is read from, and the frame goes out with a
// gather write of header + that memory. Per chunk: reduce-scatter adds the received frame straight
// into `data` and sends the partial sum from `data`; the last reduce-scatter step writes the
// complete sum into `data` and into a stage buffer the frames hold (shared ownership); the
// all-gather copies the frame into `data` once and forwards the frame itself. Why a region of
// `data` is never changed while a send of it is on the wire: the reduce-scatter sends values of
// `data` that are next written by the all-gather, with the final sum of the same chunk, and that
// sum cannot exist before the successor has received (and added) the send. The all-gather never
// sends from `data`, so the caller may change it as soon as done() -- while frames are still
// being written -- with no copy made for that.
//
// Determinism: each segment's sum is computed once, by one rank, in ring order, and then copied
// to the others, so every rank ends with bit-identical results.
//
// Half precision on the wire (RingOptions::half, --codec fp16 under allreduce): every value sent
// is IEEE fp16, two per 4-byte word (a chunk of odd length is padded with one zero half), so a
// round moves half the bytes. Sums stay fp32: a received half is widened and added to the
// receiver's fp32 value. Rounding to fp16 happens (1) at every reduce-scatter send, the partial
// sum so far, and (2) once on the complete sum, by the rank that completes the segment, before
// the all-gather; that rank also keeps the rounded value, so every rank ends with the same bits.
// The buffer sent from is a per-round copy in fp16 (one region per chunk, written once), held by
// the frames as the stage buffer is.
//
// Like a strategy role, this class never touches sockets or threads: start() and on_chunk()
// append RingChunk envelopes addressed to the next rank to an Outbox; a driver delivers them
// (TCP: psgd/tcp_ring.h, the client; or the simulator). Chunks that arrive before start() for
// their round are kept and replayed. One thread at a time; chunks from the previous rank must be
// delivered in the order they were sent.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "psgd/strategy.h"

namespace psgd {

struct RingOptions {
  std::size_t chunk_elements = 64 * 1024;  // values per message (a segment is cut into chunks)
  bool half = false;                       // values travel as IEEE fp16 (see above)
};

class RingAllreduce {
 public:
  // `next`: the node rank + 1 is, where this rank's chunks go; -1: node (rank + 1) mod world, as
  // when ranks are worker ids. A ring re-formed over some of the workers
  // (--allreduce_on_loss shrink) ranks its members 0 .. world-1 and names each one's successor.
  RingAllreduce(int rank, int world, RingOptions options = {}, NodeId next = -1);

  // Bucketed (allreduce --overlap): `data` of every start() is the window [offset, offset +
  // data.size()) of a buffer of `total` values, and each value is summed in the segment the whole
  // buffer's ring would put it in (a segment clipped to the window, maybe empty: its chunks carry
  // no values). So every value is summed by the same ranks in the same order, and rounded to fp16
  // at the same points, as by one ring over the whole buffer: the same bits.
  void set_window(std::size_t offset, std::size_t total);
  // Starts summing `data` in place across the ring for `round` (rounds increase by one per
  // call). `data` must stay valid, the same length on every rank, and be changed by nobody else
  // until done(); after that the caller may reuse it at once, even while the driver is still
  // writing frames of this round (the Outbox messages keep what they send alive).
  void start(std::int64_t round, std::span<float> data, Outbox& out);
  // A RingChunk from the previous rank. Throws ProtocolError for a chunk that does not belong
  // (an old round, a step or chunk out of range, a wrong length).
  void on_chunk(const RingChunk& chunk, Outbox& out);
  // The same, forwarding the chunk's frame in the all-gather (no copy, no allocation).
  void on_chunk(RingChunk&& chunk, Outbox& out);
  // True once `data` holds the element-wise sum over all ranks.
  bool done() const { return active_ && received_ == expected_; }
  // True while this rank still has chunks of the current round to send to the next rank.
  bool sends_remaining() const { return active_ && sent_ < expected_; }
  // Bytes of values sent in the current round.
  std::uint64_t bytes_sent() const { return bytes_sent_; }

  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  struct Range {
    std::size_t begin = 0;
    std::size_t size = 0;
  };
  Range segment(int s) const;  // in data_'s coordinates
  Range chunk_range(int segment, int chunk) const;
  int segment_received_at(int step) const;
  // Sends `size` values at `values` (not copied: see apply() for why they stay unchanged until
  // received; `owner`, if any, keeps them alive).
  void send(int step, int chunk, const float* values, std::size_t size,
            std::shared_ptr<const void> owner, Outbox& out);
  // Half: rounds `size` values at `values` into the fp16 region of chunk `index` of the round's
  // wire buffer and sends that region.
  void send_half(int step, int chunk, int index, const float* values, std::size_t size,
                 Outbox& out);
  std::size_t wire_bytes(std::size_t values) const;
  void forward(RingChunk&& chunk, Outbox& out);
  void apply(RingChunk&& chunk, Outbox& out);
  void apply_half(RingChunk&& chunk, float* dst, std::size_t n, Outbox& out);

  int rank_;
  int world_;
  RingOptions options_;
  NodeId next_;
  std::int64_t round_ = -1;
  bool active_ = false;
  std::span<float> data_;
  std::size_t window_offset_ = 0;
  std::size_t window_total_ = 0;  // 0: data_ is the whole buffer
  int chunks_ = 1;                // chunks per segment
  std::int64_t expected_ = 0;
  std::int64_t received_ = 0;
  std::int64_t sent_ = 0;  // every rank sends as many chunks as it receives
  std::uint64_t bytes_sent_ = 0;
  std::vector<RingChunk> early_;  // chunks of a round not started yet
  // The segment this rank completes, which its all-gather frames send from (and hold).
  std::shared_ptr<std::vector<float>> stage_;
  std::size_t stage_begin_ = 0;  // its offset in the data
  // Half: the round's fp16 copy, chunk k of segment s at byte 2 * begin + 2 * (s * chunks_ + k).
  std::shared_ptr<std::vector<std::uint8_t>> wire_;
};

}  // namespace psgd
