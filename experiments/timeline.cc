#include "experiments/timeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "experiments/run_dir.h"

namespace psgd {
namespace {

// Events per recorded iteration: four per worker and two on the server.
std::int64_t events_per_iteration(int nodes) {
  return 4 * static_cast<std::int64_t>(nodes) + 2;
}

double micros(double seconds) {
  return seconds * 1e6;
}

}  // namespace

TimelineRecorder::TimelineRecorder(TimelineOptions options, const Clock* clock)
    : opts_(options), clock_(clock), origin_(clock->now()) {
  PSGD_CHECK(clock_ != nullptr, "timeline needs a clock");
  const std::int64_t per_iter = events_per_iteration(std::max(1, opts_.node_count));
  const std::int64_t budget = std::max<std::int64_t>(opts_.max_events, per_iter);
  const std::int64_t wanted = per_iter * std::max<std::int64_t>(1, opts_.total_iterations);
  stride_ = std::max<std::int64_t>(1, (wanted + budget - 1) / budget);
}

void TimelineRecorder::slice(int pid, const char* name, double start_s, double dur_s,
                             nlohmann::json args) {
  if (static_cast<std::int64_t>(events_.size()) >= opts_.max_events) {
    truncated_ = true;
    return;
  }
  events_.push_back({{"name", name},
                     {"cat", pid == 0 ? "server" : "worker"},
                     {"ph", "X"},
                     {"pid", pid},
                     {"tid", 0},
                     {"ts", micros(start_s)},
                     {"dur", micros(std::max(0.0, dur_s))},
                     {"args", std::move(args)}});
}

void TimelineRecorder::on_worker(NodeId worker, const WorkerReport& r) {
  const double reply = clock_->now() - origin_;
  const double arrival = reply - r.held_s;
  if (!round_open_ || arrival < round_first_arrival_) round_first_arrival_ = arrival;
  round_open_ = true;
  round_sampled_ = r.iteration % stride_ == 0;
  if (!round_sampled_) return;
  const int pid = worker + 1;
  const PhaseTimes& t = r.times;
  const double encode_start = arrival - t.encode_s;
  const double compute_start = encode_start - t.compute_s;
  const double decode_start = compute_start - t.decode_s;
  const nlohmann::json it = {{"iteration", r.iteration}};
  if (t.wait_s > 0) slice(pid, "wait", decode_start - t.wait_s, t.wait_s, it);
  slice(pid, "decode", decode_start, t.decode_s, it);
  slice(pid, "compute", compute_start, t.compute_s,
        {{"iteration", r.iteration}, {"loss", r.loss}, {"samples", r.samples}});
  slice(pid, "encode", encode_start, t.encode_s,
        {{"iteration", r.iteration}, {"payload_bytes", r.payload_bytes}, {"held_s", r.held_s}});
}

void TimelineRecorder::on_round(const RoundStats& stats) {
  const double reply = clock_->now() - origin_;
  if (round_sampled_) {
    const double start = std::min(round_first_arrival_, reply);
    slice(0, "round", start, reply - start,
          {{"iteration", stats.iteration - 1},
           {"gradients", stats.gradients},
           {"train_loss", stats.train_loss},
           {"decode_s", stats.decode_s}});
    slice(0, "apply", reply - stats.apply_s, stats.apply_s, {{"iteration", stats.iteration - 1}});
  }
  round_sampled_ = false;
  round_open_ = false;
}

void TimelineRecorder::on_event(const StrategyEvent& event) {
  // Kept even when the budget of slices is spent: there are few, and they explain the rest.
  events_.push_back({{"name", event.event},
                     {"cat", "server"},
                     {"ph", "i"},
                     {"s", "g"},
                     {"pid", 0},
                     {"tid", 0},
                     {"ts", micros(clock_->now() - origin_)},
                     {"args",
                      {{"iteration", event.iteration},
                       {"lost", event.lost},
                       {"members", event.members},
                       {"ring_size", event.members.size()},
                       {"adopted", event.adopted}}}});
}

nlohmann::json TimelineRecorder::to_json() const {
  nlohmann::json trace = nlohmann::json::array();
  auto meta = [&](int pid, const std::string& name) {
    trace.push_back({{"name", "process_name"},
                     {"ph", "M"},
                     {"pid", pid},
                     {"tid", 0},
                     {"args", {{"name", name}}}});
    trace.push_back({{"name", "process_sort_index"},
                     {"ph", "M"},
                     {"pid", pid},
                     {"tid", 0},
                     {"args", {{"sort_index", pid}}}});
  };
  meta(0, "server");
  for (int w = 0; w < opts_.node_count; ++w) {
    const std::string host =
        static_cast<std::size_t>(w) < hosts_.size() && !hosts_[w].empty() ? hosts_[w] : "";
    meta(w + 1,
         host.empty() ? fmt::format("worker {}", w) : fmt::format("worker {} ({})", w, host));
  }
  for (const auto& e : events_)
    trace.push_back(e);
  return {{"traceEvents", std::move(trace)},
          {"displayTimeUnit", "ms"},
          {"otherData",
           {{"psgd_timeline",
             {{"stride", stride_},
              {"max_events", opts_.max_events},
              {"truncated", truncated_},
              {"note",
               "worker slices are reconstructed backwards from each gradient's arrival at the "
               "server (server clock); see experiments/timeline.h"}}}}}};
}

void TimelineRecorder::write(const std::string& path) const {
  write_file_atomic(path, to_json().dump());
}

}  // namespace psgd
