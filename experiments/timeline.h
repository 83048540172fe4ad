#pragma once
// TimelineRecorder: the run's per-worker phases as a Chrome trace (timeline.json), viewable in
// chrome://tracing or ui.perfetto.dev.
//
// Tracks: process 0 is the server (one slice per round, from the round's first gradient arriving
// to the reply, with the optimiser step nested in it); process w + 1 is worker w, with slices
// wait, decode, compute, encode for every recorded iteration.
//
// Where the times come from. The recorder is a ServerObserver, so it sees what the server sees:
// the time it replied to a round (the clock when on_worker is called), each gradient's held_s
// (arrival to reply, hence its arrival time) and the PhaseTimes the worker measured for that
// iteration. Worker slices are reconstructed backwards from the arrival on the server's clock:
// encode ends at the arrival (the uplink transfer is not known separately and is drawn as part of
// the next wait), compute ends where encode starts, decode ends where compute starts, and wait
// (from sending the previous gradient to receiving these parameters) ends where decode starts.
// Worker clocks are never compared with the server's, so the picture is consistent across hosts
// but each slice's position is an estimate within the unknown one-way network delay.
//
// Size bound: at most max_events events. When the whole run would need more, every stride-th
// iteration is recorded (stride chosen from the schedule up front) and the file says so in its
// metadata ("psgd_timeline": {"stride": ...}).
//
// Threading: called by the driver's thread only, like every ServerObserver.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.h"
#include "psgd/strategy.h"

namespace psgd {

struct TimelineOptions {
  int node_count = 1;
  std::int64_t total_iterations = 0;  // to choose the sampling stride
  std::int64_t max_events = 200'000;  // ~25 MB of JSON
};

class TimelineRecorder final : public ServerObserver {
 public:
  // Times are measured from the moment of construction on `clock`.
  TimelineRecorder(TimelineOptions options, const Clock* clock);

  void set_worker_hosts(std::vector<std::string> hosts) { hosts_ = std::move(hosts); }
  // Measure times from now on (call when training starts).
  void start() { origin_ = clock_->now(); }
  void on_worker(NodeId worker, const WorkerReport& report) override;
  void on_round(const RoundStats& stats) override;
  // An instant event on the server's track ("ring_reformed", with its members).
  void on_event(const StrategyEvent& event) override;

  std::int64_t stride() const { return stride_; }
  std::size_t events() const { return events_.size(); }
  nlohmann::json to_json() const;
  // Writes the trace atomically; IoError on failure.
  void write(const std::string& path) const;

 private:
  void slice(int pid, const char* name, double start_s, double dur_s, nlohmann::json args);

  TimelineOptions opts_;
  const Clock* clock_;
  double origin_;
  std::int64_t stride_ = 1;
  std::vector<std::string> hosts_;
  std::vector<nlohmann::json> events_;
  bool round_sampled_ = false;
  bool round_open_ = false;  // a gradient of the current round has been seen
  double round_first_arrival_ = 0;
  bool truncated_ = false;
};

// Forwards every observation to several observers, in order.
class ObserverFanout final : public ServerObserver {
 public:
  explicit ObserverFanout(std::vector<ServerObserver*> observers)
      : observers_(std::move(observers)) {}
  void on_worker(NodeId worker, const WorkerReport& report) override {
    for (auto* o : observers_)
      o->on_worker(worker, report);
  }
  void on_round(const RoundStats& stats) override {
    for (auto* o : observers_)
      o->on_round(stats);
  }
  void on_event(const StrategyEvent& event) override {
    for (auto* o : observers_)
      o->on_event(event);
  }

 private:
  std::vector<ServerObserver*> observers_;
};

}  // namespace psgd
