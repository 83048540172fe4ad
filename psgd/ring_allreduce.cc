#include "psgd/ring_allreduce.h"

#include <algorithm>

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

RingAllreduce::RingAllreduce(int rank, int world, RingOptions options)
    : rank_(rank), world_(world), options_(options), next_(mod(rank + 1, world)) {
  PSGD_CHECK(world >= 1 && rank >= 0 && rank < world, "ring: rank {} of {}", rank, world);
  PSGD_CHECK(options_.chunk_elements > 0, "ring: chunk_elements must be positive");
}

RingAllreduce::Range RingAllreduce::chunk_range(int segment, int chunk) const {
  const auto [seg_begin, seg_size] = part(data_.size(), world_, segment);
  const auto [begin, size] = part(seg_size, chunks_, chunk);
  return {seg_begin + begin, size};
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
  const std::size_t max_segment = part(data.size(), world_, 0).second;
  chunks_ = static_cast<int>(std::max<std::size_t>(
      1, (max_segment + options_.chunk_elements - 1) / options_.chunk_elements));
  expected_ = static_cast<std::int64_t>(2 * (world_ - 1)) * chunks_;
  if (world_ == 1) return;
  for (int c = 0; c < chunks_; ++c)
    send(0, c, out);
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

void RingAllreduce::send(int step, int chunk, Outbox& out) {
  // At step s rank r sends the segment its successor receives at step s.
  const int segment = mod(rank_ - step, world_);
  const Range r = chunk_range(segment, chunk);
  const auto values = data_.subspan(r.begin, r.size);
  forward(RingChunk{.round = round_,
                    .step = step,
                    .chunk = chunk,
                    .values = std::vector<float>(values.begin(), values.end())},
          out);
}

void RingAllreduce::forward(RingChunk&& chunk, Outbox& out) {
  bytes_sent_ += chunk.values.size() * sizeof(float);
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
  if (chunk.values.size() != r.size) {
    throw ProtocolError(fmt::format(
        "ring rank {}: chunk {} of step {} has {} values where {} belong; are all ranks reducing "
        "buffers of the same length?",
        rank_, chunk.chunk, chunk.step, chunk.values.size(), r.size));
  }
  float* dst = data_.data() + r.begin;
  float* v = chunk.values.data();
  if (chunk.step < world_ - 1) {
    // Reduce-scatter: the partial sum travels on in the received buffer. This rank's copy of the
    // segment is needed again only once it is complete (the last reduce-scatter step); until
    // then the all-gather overwrites it anyway.
    for (std::size_t i = 0; i < r.size; ++i)
      v[i] += dst[i];
    if (chunk.step == world_ - 2) std::copy(v, v + r.size, dst);
  } else {
    std::copy(v, v + r.size, dst);
  }
  ++received_;
  PSGD_CHECK(received_ <= expected_, "ring rank {}: more chunks than the round has", rank_);
  if (chunk.step < last_step) {
    ++chunk.step;
    forward(std::move(chunk), out);
  }
}

}  // namespace psgd
