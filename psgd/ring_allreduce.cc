#include "psgd/ring_allreduce.h"

#include <algorithm>
#include <cstring>

#include "codecs/simd.h"
#include "core/error.h"

namespace psgd {
namespace {

int mod(int a, int n) {
  return ((a % n) + n) % n;
}

// Part `i` of `count` near-equal parts of [0, length): the first length % count parts are one
// longer.
std::pair<std::size_t, std::size_t> part(std::size_t length, int count, int i) {
  const auto c = static_cast<std::size_t>(count);
  const auto k = static_cast<std::size_t>(i);
  const std::size_t base = length / c;
  const std::size_t extra = length % c;
  return {k * base + std::min(k, extra), base + (k < extra ? 1 : 0)};
}

}  // namespace

RingAllreduce::RingAllreduce(int rank, int world, RingOptions options, NodeId next)
    : rank_(rank),
      world_(world),
      options_(options),
      next_(next >= 0 ? next : mod(rank + 1, world)) {
  PSGD_CHECK(world >= 1 && rank >= 0 && rank < world, "ring: rank {} of {}", rank, world);
  PSGD_CHECK(options_.chunk_elements > 0, "ring: chunk_elements must be positive");
}

void RingAllreduce::set_window(std::size_t offset, std::size_t total) {
  window_offset_ = offset;
  window_total_ = total;
}

RingAllreduce::Range RingAllreduce::segment(int s) const {
  if (window_total_ == 0) {
    const auto [begin, size] = part(data_.size(), world_, s);
    return {begin, size};
  }
  // The segment of the whole buffer, clipped to the window, in the window's coordinates.
  const auto [begin, size] = part(window_total_, world_, s);
  const std::size_t lo = std::max(begin, window_offset_);
  const std::size_t hi = std::min(begin + size, window_offset_ + data_.size());
  return lo < hi ? Range{lo - window_offset_, hi - lo} : Range{0, 0};
}

RingAllreduce::Range RingAllreduce::chunk_range(int s, int chunk) const {
  const Range seg = segment(s);
  const auto [begin, size] = part(seg.size, chunks_, chunk);
  return {seg.begin + begin, size};
}

int RingAllreduce::segment_received_at(int step) const {
  return mod(rank_ - 1 - step, world_);
}

void RingAllreduce::start(std::int64_t round, std::span<float> data, Outbox& out) {
  PSGD_CHECK(round > round_, "ring: round {} started after round {}", round, round_);
  round_ = round;
  data_ = data;
  active_ = true;
  received_ = 0;
  sent_ = 0;
  bytes_sent_ = 0;
  PSGD_CHECK(window_total_ == 0 || window_offset_ + data.size() <= window_total_,
             "ring: a window of {} values at {} of {}", data.size(), window_offset_, window_total_);
  std::size_t max_segment = 0;
  for (int s = 0; s < world_; ++s)
    max_segment = std::max(max_segment, segment(s).size);
  chunks_ = static_cast<int>(std::max<std::size_t>(
      1, (max_segment + options_.chunk_elements - 1) / options_.chunk_elements));
  expected_ = static_cast<std::int64_t>(2 * (world_ - 1)) * chunks_;
  if (world_ == 1) return;
  // The segment this rank completes (received at the last reduce-scatter step) is staged in a
  // buffer of its own, which the all-gather's frames hold: a frame of the previous round that is
  // still being written keeps the old one.
  if (options_.half) {
    if (!wire_ || wire_.use_count() > 1) wire_ = std::make_shared<std::vector<std::uint8_t>>();
    wire_->resize(2 * data.size() + 2 * static_cast<std::size_t>(world_ * chunks_));
  } else {
    const Range mine = segment(segment_received_at(world_ - 2));
    if (!stage_ || stage_.use_count() > 1) stage_ = std::make_shared<std::vector<float>>();
    stage_->resize(mine.size);
    stage_begin_ = mine.begin;
  }
  for (int c = 0; c < chunks_; ++c) {
    // Step 0: this rank's own values of the segment its successor receives at step 0.
    const Range r = chunk_range(rank_, c);
    if (options_.half) {
      send_half(0, c, rank_ * chunks_ + c, data_.data() + r.begin, r.size, out);
    } else {
      send(0, c, data_.data() + r.begin, r.size, nullptr, out);
    }
  }
  // Replay what the previous rank sent before this rank was ready.
  std::vector<RingChunk> early;
  early.swap(early_);
  for (auto& chunk : early) {
    if (chunk.round == round_) {
      apply(std::move(chunk), out);
    } else {
      early_.push_back(std::move(chunk));
    }
  }
}

void RingAllreduce::send(int step, int chunk, const float* values, std::size_t size,
                         std::shared_ptr<const void> owner, Outbox& out) {
  forward(RingChunk{.round = round_,
                    .step = step,
                    .chunk = chunk,
                    .viewed = true,
                    .view = {reinterpret_cast<const std::uint8_t*>(values), size * sizeof(float)},
                    .owner = std::move(owner)},
          out);
}

std::size_t RingAllreduce::wire_bytes(std::size_t values) const {
  return options_.half ? 4 * ((values + 1) / 2) : 4 * values;
}

void RingAllreduce::send_half(int step, int chunk, int index, const float* values, std::size_t size,
                              Outbox& out) {
  const Range r = chunk_range(index / chunks_, index % chunks_);
  std::uint8_t* at = wire_->data() + 2 * r.begin + 2 * static_cast<std::size_t>(index);
  simd::to_half(values, size, at);
  if (size % 2) at[2 * size] = at[2 * size + 1] = 0;  // the padding half
  forward(RingChunk{.round = round_,
                    .step = step,
                    .chunk = chunk,
                    .viewed = true,
                    .view = {at, wire_bytes(size)},
                    .owner = wire_},
          out);
}

void RingAllreduce::forward(RingChunk&& chunk, Outbox& out) {
  bytes_sent_ += chunk.bytes().size();
  ++sent_;
  out.push_back({next_, std::make_shared<const Message>(std::move(chunk))});
}

void RingAllreduce::on_chunk(const RingChunk& chunk, Outbox& out) {
  on_chunk(RingChunk(chunk), out);
}

void RingAllreduce::on_chunk(RingChunk&& chunk, Outbox& out) {
  if (chunk.round < round_ || (chunk.round == round_ && !active_)) {
    throw ProtocolError(fmt::format("ring rank {}: a chunk of round {} arrived during round {}",
                                    rank_, chunk.round, round_));
  }
  if (chunk.round > round_ || !active_) {
    early_.push_back(std::move(chunk));
    return;
  }
  apply(std::move(chunk), out);
}

void RingAllreduce::apply(RingChunk&& chunk, Outbox& out) {
  const int last_step = 2 * (world_ - 1) - 1;
  if (chunk.step < 0 || chunk.step > last_step || chunk.chunk < 0 || chunk.chunk >= chunks_) {
    throw ProtocolError(
        fmt::format("ring rank {}: chunk {} of step {} is out of range ({} steps of {} chunks)",
                    rank_, chunk.chunk, chunk.step, last_step + 1, chunks_));
  }
  const Range r = chunk_range(segment_received_at(chunk.step), chunk.chunk);
  if (chunk.bytes().size() != wire_bytes(r.size)) {
    throw ProtocolError(fmt::format(
        "ring rank {}: chunk {} of step {} has {} bytes where {} belong ({} values{}); are all "
        "ranks reducing buffers of the same length and precision?",
        rank_, chunk.chunk, chunk.step, chunk.bytes().size(), wire_bytes(r.size), r.size,
        options_.half ? " in fp16" : ""));
  }
  ++received_;
  PSGD_CHECK(received_ <= expected_, "ring rank {}: more chunks than the round has", rank_);
  // The received values may sit anywhere in a frame: read them with memcpy (no alignment or
  // aliasing assumption; compiles to plain vector loads).
  const std::uint8_t* in = chunk.bytes().data();
  float* dst = data_.data() + r.begin;
  const std::size_t n = r.size;
  if (options_.half) {
    apply_half(std::move(chunk), dst, n, out);
    return;
  }
  if (chunk.step < world_ - 2) {
    // Reduce-scatter: add into this rank's buffer, and send the partial sum on from there. That
    // region is written next by the all-gather, with the segment's final sum, which depends on
    // the successor having received this send: it is never overwritten while on the wire.
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, in + i * sizeof(float), sizeof(float));
      dst[i] += v;
    }
    const int step = chunk.step;
    const int c = chunk.chunk;
    chunk = {};  // let the frame go before the next one is read
    send(step + 1, c, dst, n, nullptr, out);
  } else if (chunk.step == world_ - 2) {
    // The last reduce-scatter step completes the segment: into the buffer, and into the stage,
    // which the all-gather sends from. (The buffer itself may change once done() -- the caller
    // owns it again -- while those frames are still being written.)
    float* fin = stage_->data() + (r.begin - stage_begin_);
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, in + i * sizeof(float), sizeof(float));
      const float sum = dst[i] + v;
      dst[i] = sum;
      fin[i] = sum;
    }
    const int c = chunk.chunk;
    chunk = {};
    send(world_ - 1, c, fin, n, stage_, out);
  } else {
    // All-gather: one copy into the buffer; the chunk goes on as received, still viewing (and
    // holding) the frame it arrived in.
    if (n) std::memcpy(dst, in, n * sizeof(float));
    if (chunk.step < last_step) {
      ++chunk.step;
      forward(std::move(chunk), out);
    }
  }
}

void RingAllreduce::apply_half(RingChunk&& chunk, float* dst, std::size_t n, Outbox& out) {
  const std::uint8_t* in = chunk.bytes().data();
  const int last_step = 2 * (world_ - 1) - 1;
  const int c = chunk.chunk;
  if (chunk.step <= world_ - 2) {
    // Reduce-scatter: widen and add in fp32, then send the partial sum rounded to fp16. At the
    // last step the sum is complete: round it once, and keep the rounded value here too.
    simd::from_half_add(in, n, dst, 1.0f);
    const int step = chunk.step;
    chunk = {};
    const int segment = segment_received_at(step);
    send_half(step + 1, c, segment * chunks_ + c, dst, n, out);
    if (step == world_ - 2) {
      const Range r = chunk_range(segment, c);
      simd::from_half(
          wire_->data() + 2 * r.begin + 2 * static_cast<std::size_t>(segment * chunks_ + c), n,
          dst);
    }
  } else {
    simd::from_half(in, n, dst);
    if (chunk.step < last_step) {
      ++chunk.step;
      forward(std::move(chunk), out);
    }
  }
}

}  // namespace psgd
