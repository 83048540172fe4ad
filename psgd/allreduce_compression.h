#pragma once
// Compressed allreduce: what --codec means under --psgd allreduce, declared once.
//
// An allreduce sums at every hop, so it can carry only compressions whose sum is meaningful:
// a cast the ring adds in fp32 (fp16), or factors that are themselves sums (PowerSGD's P and Q).
// The point-to-point codecs of codecs/codec_table.h (qsgd, sign, topk, ...) encode one sender's
// gradient for one receiver and do not apply; the strategy's table entry says which kind it
// carries (StrategyEntry::allreduce_compressions) and the job refuses the rest with one line.
//
//   plain     fp32, exact (the ring of psgd/ring_allreduce.h)
//   fp16      the ring carries IEEE half precision: half the bytes, fp32 accumulation; the
//             gradient is divided by n before rounding, as PyTorch's fp16_compress_hook does
//   powersgd  rank --codec_rank PowerSGD (psgd/powersgd.h), PyTorch's powerSGD_hook
//
// An AllreduceCompression turns a worker's gradient into the buffers the allreduce sums, one
// per round, and the last sum into the update every worker applies alike. One thread.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "psgd/powersgd.h"

namespace psgd {

class AllreduceCompression {
 public:
  virtual ~AllreduceCompression() = default;
  // Allreduce rounds per iteration.
  virtual int rounds() const = 0;
  // The buffer to sum in round `k`: k = 0 from `gradient`; k > 0 after round k-1's buffer was
  // summed in place (`gradient` is then unused).
  virtual std::span<float> round_buffer(int k, std::span<const float> gradient) = 0;
  // After the last round: the update, the same on every worker (the mean gradient, or its
  // approximation), written into `update` (the gradient's length).
  virtual void finish(std::span<float> update) = 0;
  // Bucketed (allreduce --overlap, psgd/allreduce_overlap.h): whether round 0's buffer can be
  // filled one part at a time, each value from the same value of the gradient alone (one round,
  // value by value: plain and fp16, not PowerSGD's matrices).
  virtual bool bucketed() const { return false; }
  // Fills values [begin, end) of round 0's buffer (sized like `gradient`) as round_buffer(0,
  // gradient) would, leaving the rest; returns the whole buffer. Only when bucketed().
  virtual std::span<float> bucket_buffer(std::span<const float> gradient, std::size_t begin,
                                         std::size_t end) {
    (void)gradient;
    (void)begin;
    (void)end;
    return {};
  }
  // Whether the ring carries fp16 (RingOptions::half).
  virtual bool half() const { return false; }
  // The ring now has `world` members (--allreduce_on_loss shrink re-formed it after a loss);
  // false when this compression cannot follow a ring that shrinks (the job refuses the pair).
  virtual bool set_world(int world) {
    (void)world;
    return false;
  }
  // State a checkpoint keeps (empty: none).
  virtual std::vector<std::uint8_t> snapshot() const { return {}; }
  virtual void restore(std::span<const std::uint8_t>) {}
};

struct AllreduceCompressionSpec {
  int world = 1;
  int rank = 4;                      // --codec_rank
  std::uint64_t seed = 1;            // powersgd's first Q, shared by the workers
  std::vector<MatrixShape> tensors;  // the model's tensors as matrices, flat order
};

struct AllreduceCompressionEntry {
  std::string_view name;       // the --codec value
  std::string_view summary;    // one line, for --help and the README
  std::string_view ddp_hook;   // PyTorch's DDP communication hook doing the same
  unsigned options = 0;        // CodecOption bits (codecs/codec_table.h) it reads
  bool needs_tensors = false;  // reads the model's tensor shapes
  // Follows a ring that shrinks after a loss (--allreduce_on_loss shrink): set_world() works.
  bool shrinks = false;
  // Sums bucket by bucket (allreduce --overlap): AllreduceCompression::bucketed().
  bool buckets = false;
  std::unique_ptr<AllreduceCompression> (*make)(const AllreduceCompressionSpec& spec) = nullptr;
};

std::span<const AllreduceCompressionEntry> allreduce_compression_table();
// nullptr when `codec` is not an allreduce compression.
const AllreduceCompressionEntry* find_allreduce_compression(std::string_view codec);
std::vector<std::string> allreduce_compression_names();

}  // namespace psgd
