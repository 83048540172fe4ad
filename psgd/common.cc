#include "psgd/common.h"

#include <algorithm>

#include "core/error.h"

namespace psgd {

const Gradient& expect_gradient(const char* strategy, NodeId from, int node_count,
                                const Message& message) {
  const auto* g = std::get_if<Gradient>(&message);
  if (g == nullptr) {
    throw ProtocolError(fmt::format("{} server: unexpected {} message from worker {}", strategy,
                                    type_name(type_of(message)), from));
  }
  if (from < 0 || from >= node_count) {
    throw ProtocolError(fmt::format("{} server: gradient from unknown worker {}", strategy, from));
  }
  return *g;
}

Payload PayloadRecycler::take() {
  Payload payload;
  if (last_ && last_.use_count() == 1) {
    std::visit(
        [&](auto& m) {
          if constexpr (requires { m.values.bytes; }) payload = std::move(m.values);
        },
        *last_);
  }
  last_.reset();
  // Only the owned buffer is worth recycling; a payload viewing a received frame lets it go.
  payload.frame.reset();
  payload.received = {};
  return payload;
}

std::shared_ptr<const Message> PayloadRecycler::keep(Message message) {
  last_ = std::make_shared<Message>(std::move(message));
  return last_;
}

std::shared_ptr<const Message> params_message(std::int64_t iteration, Codec& codec,
                                              std::span<const float> values) {
  return std::make_shared<const Message>(
      Params{.iteration = iteration, .values = codec.encode(values)});
}

std::shared_ptr<const Message> params_message(std::int64_t iteration, Codec& codec,
                                              std::span<const float> values,
                                              PayloadRecycler& replies) {
  Payload payload = replies.take();
  codec.encode_into(values, payload);
  return replies.keep(Params{.iteration = iteration, .values = std::move(payload)});
}

void broadcast(const std::shared_ptr<const Message>& message, int node_count, Outbox& out) {
  for (NodeId w = 0; w < node_count; ++w)
    out.push_back({w, message});
}

std::int64_t install_params(const Message& message, std::int64_t last_iteration,
                            double waiting_since, const Codec& downlink, Learner& learner,
                            const Clock& clock, PhaseTimes& times) {
  const auto* p = std::get_if<Params>(&message);
  if (p == nullptr) {
    throw ProtocolError(fmt::format("worker: unexpected {} message", type_name(type_of(message))));
  }
  if (p->iteration <= last_iteration) {
    throw ProtocolError(fmt::format("worker: parameters of iteration {} arrived after {}",
                                    p->iteration, last_iteration));
  }
  if (waiting_since >= 0) times.wait_s = clock.now() - waiting_since;
  Stopwatch sw(clock);
  downlink.decode(p->values, learner.parameters());
  times.decode_s = sw.seconds();
  return p->iteration;
}

std::int64_t start_params(const char* strategy, const Params& p, bool& started,
                          std::int64_t total_iterations, const CodecSpec& downlink,
                          Learner& learner) {
  if (started || p.iteration < 0 || p.iteration >= total_iterations) {
    throw ProtocolError(fmt::format("{} worker: the server sent parameters of iteration {} {}",
                                    strategy, p.iteration,
                                    started ? "a second time" : "outside the run"));
  }
  make_codec(downlink)->decode(p.values, learner.parameters());
  started = true;
  return p.iteration;
}

WorkerReport report_of(const Gradient& g) {
  return WorkerReport{.iteration = g.iteration,
                      .loss = g.loss,
                      .samples = g.samples,
                      .times = g.times,
                      .held_s = 0,
                      .payload_bytes = g.values.size_bytes(),
                      .compression_error = g.compression_error};
}

void add_to_sum(std::span<float> sum, std::span<const float> part, bool first) {
  PSGD_CHECK_EQ(part.size(), sum.size(), "a part of the sum has the wrong size");
  if (first) {
    std::copy(part.begin(), part.end(), sum.begin());
    return;
  }
  float* __restrict__ dst = sum.data();
  const float* __restrict__ src = part.data();
  for (std::size_t i = 0; i < sum.size(); ++i)
    dst[i] += src[i];
}

void scale(std::span<float> values, float factor) {
  for (float& v : values)
    v *= factor;
}

std::span<const float> mean_of(std::span<const std::span<const float>> parts,
                               std::span<float> scratch) {
  PSGD_CHECK(!parts.empty(), "mean of nothing");
  for (std::size_t k = 0; k < parts.size(); ++k)
    PSGD_CHECK_EQ(parts[k].size(), scratch.size(), "part {} has the wrong size", k);
  if (parts.size() == 1) return parts[0];
  // Block by block, so that a block of the sum stays in the cache while every part is added to
  // it and it is scaled: the parts are read once and the sum written once, instead of the sum
  // going through memory once per part and once more for the scaling. Each element still sees
  // ((p0 + p1) + p2) ... then * 1/count, in that order: the result is bit for bit the same.
  // bench/server_round_bench: as fast as the three passes at the MLP's size (the whole sum fits
  // in the cache there), faster for large models (bench/README.md).
  constexpr std::size_t kBlock = 8192;  // floats: 32 kB of the sum
  const float inv = 1.0f / static_cast<float>(parts.size());
  const std::size_t n = scratch.size();
  for (std::size_t first = 0; first < n; first += kBlock) {
    const std::size_t len = std::min(kBlock, n - first);
    const std::span<float> block = scratch.subspan(first, len);
    for (std::size_t k = 0; k < parts.size(); ++k)
      add_to_sum(block, parts[k].subspan(first, len), k == 0);
    scale(block, inv);
  }
  return scratch;
}

std::span<const float> mean_of_slots(std::span<const std::vector<float>> slots,
                                     const std::vector<bool>& use, std::span<float> scratch) {
  std::vector<std::span<const float>> parts;
  for (std::size_t w = 0; w < slots.size(); ++w) {
    if (use[w]) parts.emplace_back(slots[w]);
  }
  return mean_of(parts, scratch);
}

std::span<const float> scaled_sum_of_slots(std::span<const std::vector<float>> slots,
                                           const std::vector<bool>& use, float scale,
                                           std::span<float> scratch) {
  std::fill(scratch.begin(), scratch.end(), 0.0f);
  float* dst = scratch.data();
  const std::size_t n = scratch.size();
  for (std::size_t s = 0; s < slots.size(); ++s) {
    if (!use[s]) continue;
    PSGD_CHECK_EQ(slots[s].size(), n, "slot {} has the wrong size", s);
    const float* src = slots[s].data();
    for (std::size_t i = 0; i < n; ++i)
      dst[i] += src[i];
  }
  for (std::size_t i = 0; i < n; ++i)
    dst[i] *= scale;
  return scratch;
}

WorkerBuffers::WorkerBuffers(int node_count, std::span<float> target)
    : target_(target), latest_(static_cast<std::size_t>(std::max(0, node_count))) {}

void WorkerBuffers::receive(NodeId from, std::span<const float> values) {
  if (values.empty() || from < 0 || static_cast<std::size_t>(from) >= latest_.size()) return;
  if (values.size() != target_.size()) {
    throw ProtocolError(fmt::format("worker {} sent {} buffer values; the model has {}", from,
                                    values.size(), target_.size()));
  }
  latest_[static_cast<std::size_t>(from)].assign(values.begin(), values.end());
}

void WorkerBuffers::update() {
  if (target_.empty()) return;
  sum_.assign(target_.size(), 0.0f);
  int count = 0;
  for (const auto& b : latest_) {
    if (b.empty()) continue;
    for (std::size_t i = 0; i < sum_.size(); ++i)
      sum_[i] += b[i];
    ++count;
  }
  if (count == 0) return;
  const float scale = 1.0f / static_cast<float>(count);
  for (std::size_t i = 0; i < sum_.size(); ++i)
    target_[i] = sum_[i] * scale;
}

std::vector<std::vector<float>> WorkerBuffers::snapshot() const {
  return latest_;
}

void WorkerBuffers::restore(std::vector<std::vector<float>> latest) {
  if (latest.size() != latest_.size()) {
    throw ConfigError(fmt::format("checkpoint holds the buffers of {} workers, the job has {}",
                                  latest.size(), latest_.size()));
  }
  for (const auto& b : latest) {
    if (!b.empty() && b.size() != target_.size()) {
      throw ConfigError(fmt::format("checkpoint holds {} buffer values per worker, the model {}",
                                    b.size(), target_.size()));
    }
  }
  latest_ = std::move(latest);
  update();
}

}  // namespace psgd
