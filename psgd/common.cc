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

std::shared_ptr<const Message> params_message(std::int64_t iteration, Codec& codec,
                                              std::span<const float> values) {
  return std::make_shared<const Message>(
      Params{.iteration = iteration, .values = codec.encode(values)});
}

void broadcast(const std::shared_ptr<const Message>& message, int node_count, Outbox& out) {
  for (NodeId w = 0; w < node_count; ++w)
    out.push_back({w, message});
}

WorkerReport report_of(const Gradient& g) {
  return WorkerReport{.iteration = g.iteration,
                      .loss = g.loss,
                      .samples = g.samples,
                      .times = g.times,
                      .held_s = 0,
                      .payload_bytes = g.values.bytes.size()};
}

void sum_slots(std::span<const std::vector<float>> slots, const std::vector<bool>& use,
               std::span<float> out) {
  std::fill(out.begin(), out.end(), 0.0f);
  for (std::size_t w = 0; w < slots.size(); ++w) {
    if (!use[w]) continue;
    PSGD_CHECK_EQ(slots[w].size(), out.size(), "slot {} has the wrong size", w);
    const float* src = slots[w].data();
    float* dst = out.data();
    for (std::size_t i = 0; i < out.size(); ++i)
      dst[i] += src[i];
  }
}

}  // namespace psgd
