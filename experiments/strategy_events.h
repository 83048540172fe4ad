#pragma once
// A strategy's events (psgd/strategy.h StrategyEvent) as summary.json writes them, the same in
// every driver: init_server's (experiments/server/) and --simulate's (experiments/simulate.cc).
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <functional>
#include <set>
#include <utility>

#include "experiments/placement.h"
#include "psgd/context.h"
#include "psgd/strategy.h"

namespace psgd {

// One "events" entry: what happened, when (iteration: the updates applied before the new ring's
// first; epoch: the epoch, counted from 1, that first update belongs to; `time_key`: wall_s in a
// real run, virtual_s in a simulated one), the ring from then on, and the data no member holds any
// more (blocks held only by lost workers: no longer trained on).
inline nlohmann::json strategy_event_json(const StrategyEvent& e, const Schedule& schedule,
                                          const DataPlacement& data, const char* time_key,
                                          double seconds) {
  const std::set<int> members(e.members.begin(), e.members.end());
  std::vector<int> untrained;
  std::int64_t untrained_samples = 0;
  const auto& holders = data.placement.workers_of_block;
  for (std::size_t b = 0; b < holders.size(); ++b) {
    bool held = false;
    for (int w : holders[b])
      held = held || members.count(w) > 0;
    if (held) continue;
    untrained.push_back(static_cast<int>(b));
    if (b < data.blocks.size())
      untrained_samples += static_cast<std::int64_t>(data.blocks[b].size());
  }
  const auto epoch = e.iteration / schedule.iterations_per_epoch + 1;
  return {{"event", e.event},
          {"iteration", e.iteration},
          {"epoch", epoch},
          {time_key, seconds},
          {"lost", e.lost},
          {"members", e.members},
          {"ring_size", e.members.size()},
          {"adopted", e.adopted},
          {"untrained_blocks", untrained},
          {"untrained_samples", untrained_samples},
          {"effect",
           fmt::format("from iteration {} (in epoch {}) each update averages the gradients of {} "
                       "workers instead of {}; {} training samples (blocks held only by lost "
                       "workers) are no longer trained on",
                       e.iteration + 1, epoch, e.members.size(), schedule.node_count,
                       untrained_samples)}};
}

// A ServerObserver that hands each strategy event to `sink` (the driver's events list).
class StrategyEventSink final : public ServerObserver {
 public:
  explicit StrategyEventSink(std::function<void(const StrategyEvent&)> sink)
      : sink_(std::move(sink)) {}
  void on_worker(NodeId, const WorkerReport&) override {}
  void on_round(const RoundStats&) override {}
  void on_event(const StrategyEvent& event) override { sink_(event); }

 private:
  std::function<void(const StrategyEvent&)> sink_;
};

}  // namespace psgd
