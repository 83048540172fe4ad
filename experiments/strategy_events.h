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
// more: blocks held only by lost workers (untrained_blocks and their samples), or, with
// --local_data (`local_samples`: each worker's reported sample count; empty otherwise), the
// samples of the lost workers' own files (no blocks, so no untrained_blocks).
inline nlohmann::json strategy_event_json(const StrategyEvent& e, const Schedule& schedule,
                                          const DataPlacement& data, const char* time_key,
                                          double seconds,
                                          const std::vector<std::int64_t>& local_samples = {}) {
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
  for (std::size_t w = 0; w < local_samples.size(); ++w)
    if (members.count(static_cast<int>(w)) == 0) untrained_samples += local_samples[w];
  const auto epoch = e.iteration / schedule.iterations_per_epoch + 1;
  nlohmann::json j{
      {"event", e.event},
      {"iteration", e.iteration},
      {"epoch", epoch},
      {time_key, seconds},
      {"lost", e.lost},
      {"members", e.members},
      {"ring_size", e.members.size()},
      {"adopted", e.adopted},
      {"untrained_samples", untrained_samples},
      {"effect",
       fmt::format("from iteration {} (in epoch {}) each update averages the gradients of {} "
                   "workers instead of {}; {} training samples ({}) are no longer trained on",
                   e.iteration + 1, epoch, e.members.size(), schedule.node_count, untrained_samples,
                   local_samples.empty() ? "blocks held only by lost workers"
                                         : "the lost workers' own files")}};
  if (local_samples.empty()) j["untrained_blocks"] = untrained;
  return j;
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
