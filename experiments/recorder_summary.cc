// RunRecorder::finish(): summary.json, the run's outcome (experiments/recorder.h).
#include "experiments/recorder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "psgd/factory.h"

namespace psgd {
void RunRecorder::finish(const std::string& status, bool ok, std::int64_t iterations,
                         const nlohmann::json& extra) {
  try {
    write_evaluated(/*wait=*/true);
  } catch (const IoError&) {
    // The rows that could not be written are in history() all the same; the driver has reported
    // the failure (a write of the rows it calls first), and the summary is still worth a try.
  }
  nlohmann::json s;
  double best = 0;
  for (const auto& r : history_)
    if (!std::isnan(r.test_accuracy)) best = std::max(best, r.test_accuracy);
  const MetricsRow* last = history_.empty() ? nullptr : &history_.back();
  // Accuracy does not apply to reconstruction (NaN): null in JSON.
  const bool has_accuracy = last && !std::isnan(last->test_accuracy);
  auto or_null = [](bool has, auto v) { return has ? nlohmann::json(v) : nlohmann::json(nullptr); };
  s["status"] = status;
  s["ok"] = ok;
  // The first loss that was not finite, also when --on_divergence continue trained on (null: none).
  s["divergence"] = divergence_json(divergence_.divergence());
  s["final_test_accuracy"] = or_null(has_accuracy, has_accuracy ? last->test_accuracy : 0);
  s["final_test_loss"] = or_null(last, last ? last->test_loss : 0);
  s["final_train_loss"] =
      or_null(last && last->train_loss, last && last->train_loss ? *last->train_loss : 0);
  s["best_test_accuracy"] = or_null(has_accuracy, best);
  // The iteration of the evaluation the final_* figures are of: the run's last iteration when it
  // ended at an evaluation; earlier when it was interrupted or failed between two, while model.pt
  // holds the parameters of its last iteration (`evaluate` says so).
  s["final_test_iteration"] = or_null(last != nullptr, last ? last->iteration : 0);
  // Which model the test figures are of, and the last iterate's own figures (the same model when
  // nothing is averaged).
  s["evaluated_model"] = average_ ? fmt::format("ema:{}", average_->decay()) : "last iterate";
  const double iterate_accuracy = final_iterate_ ? final_iterate_->accuracy
                                  : has_accuracy ? last->test_accuracy
                                                 : NAN;
  s["final_iterate_test_accuracy"] =
      or_null(!std::isnan(iterate_accuracy), std::isnan(iterate_accuracy) ? 0 : iterate_accuracy);
  s["final_iterate_test_loss"] = or_null(last != nullptr, final_iterate_ ? final_iterate_->loss
                                                          : last         ? last->test_loss
                                                                         : 0);
  const bool has_validation = last && last->validation_loss;
  s["final_validation_loss"] = or_null(has_validation, has_validation ? *last->validation_loss : 0);
  const bool has_val_accuracy =
      has_validation && last->validation_accuracy && !std::isnan(*last->validation_accuracy);
  s["final_validation_accuracy"] =
      or_null(has_val_accuracy, has_val_accuracy ? *last->validation_accuracy : 0);
  // --target regression: RMSE and R^2 instead of accuracy (null otherwise); best is the lowest
  // RMSE of any evaluation.
  auto last_of = [&](std::optional<double> MetricsRow::*field) {
    return last && (last->*field) ? nlohmann::json(*(last->*field)) : nlohmann::json(nullptr);
  };
  s["final_test_rmse"] = last_of(&MetricsRow::test_rmse);
  s["final_test_r2"] = last_of(&MetricsRow::test_r2);
  s["final_validation_rmse"] = last_of(&MetricsRow::validation_rmse);
  s["final_validation_r2"] = last_of(&MetricsRow::validation_r2);
  std::optional<double> best_rmse, best_r2;
  for (const auto& r : history_) {
    if (r.test_rmse && !std::isnan(*r.test_rmse))
      best_rmse = std::min(best_rmse.value_or(*r.test_rmse), *r.test_rmse);
    if (r.test_r2 && !std::isnan(*r.test_r2))
      best_r2 = std::max(best_r2.value_or(*r.test_r2), *r.test_r2);
  }
  s["best_test_rmse"] = best_rmse ? nlohmann::json(*best_rmse) : nlohmann::json(nullptr);
  s["best_test_r2"] = best_r2 ? nlohmann::json(*best_r2) : nlohmann::json(nullptr);
  // --save_every_epoch: which epoch model_best.pt holds, and by which loss it was chosen.
  if (spec_.save_every_epoch) {
    const bool by_validation = last && last->validation_loss.has_value();
    s["best_model"] =
        best_model_ ? nlohmann::json{{"file", "model_best.pt"},
                                     {"epoch", best_model_->first},
                                     {"monitor", by_validation ? "validation_loss" : "test_loss"},
                                     {"loss", best_model_->second}}
                    : nlohmann::json(nullptr);
  }
  s["epochs"] = epoch_;
  s["iterations"] = iterations;
  // With background evaluation the run ends when the last one does.
  const double wall = final_wall_ && s_.evaluate_async ? *final_wall_
                      : last && epoch_ > 0             ? last->wall_s
                      : started_                       ? wall_since_start()
                                                       : 0.0;
  s["wall_seconds"] = wall;
  // Of wall_seconds: the time training was held up by the test-set evaluations at the epoch ends
  // (in the background only the wait for the last one, and for one still running at the next).
  s["eval_seconds"] = eval_seconds_;
  const auto vs = last && epoch_ > 0 ? last->virtual_s : virtual_since_start();
  s["virtual_seconds"] = or_null(vs.has_value(), vs.value_or(0));
  s["samples"] = samples_total_;
  s["samples_per_second"] = wall > 0 ? samples_total_ / wall : 0.0;
  s["bytes_up"] = last ? last->bytes_up : 0;
  s["bytes_down"] = last ? last->bytes_down : 0;
  s["data_bytes"] = data_bytes_;  // --ship_data: sent before training, not in bytes_down
  s["data_seconds"] = data_seconds_;
  if (spec_.ships_data()) s["shipped_workers"] = shipped_;
  s["target"] = spec_.target;
  s["normalize"] = spec_.normalize;
  s["nodes"] = spec_.node_count;
  s["psgd"] = spec_.psgd;
  s["codec"] = spec_.codec;
  s["redundancy"] = spec_.redundancy;
  s["block_assignment"] = spec_.block_assignment;
  s["model"] = spec_.model;
  s["dataset"] = spec_.dataset;
  s["batch_size"] = spec_.batch_size;
  s["learn_rate"] = spec_.learn_rate;
  s["seed"] = spec_.seed;
  s["parameters"] = s_.model->parameters().size();
  // Straggler and staleness accounting over the whole run (per epoch: workers.csv).
  std::int64_t dropped = 0, applied = 0, staleness_sum = 0, staleness_max = 0;
  nlohmann::json workers = nlohmann::json::array();
  for (std::size_t w = 0; w < totals_.size(); ++w) {
    const WorkerRow& t = totals_[w];
    dropped += t.dropped;
    applied += t.iterations;
    staleness_sum += t.staleness_sum;
    staleness_max = std::max(staleness_max, t.staleness_max);
    workers.push_back({{"worker", w},
                       {"host", hosts_[w]},
                       {"contributions", t.iterations},
                       {"dropped", t.dropped},
                       {"local_steps", t.local_steps},
                       {"samples", t.samples},
                       {"compute_s", t.times.compute_s},
                       {"wait_s", t.times.wait_s},
                       {"held_s", t.held_s},
                       {"staleness_mean", t.staleness_mean()},
                       {"staleness_max", t.staleness_max},
                       {"staleness_histogram", staleness_histogram_[w]}});
  }
  s["rounds_short"] = rounds_short_;
  s["dropped_gradients"] = dropped;
  s["staleness_mean"] = applied ? double(staleness_sum) / applied : 0.0;
  s["staleness_max"] = staleness_max;
  if (strategy_of(spec_).topology == Topology::kPeerToPeer) {
    // Worker-to-worker traffic (not in bytes_up / bytes_down, which count the server's links):
    // frames sent to peers, and the same with each multicast (one message to several peers)
    // counted once (psgd/coded/ccdc.h explains why both matter).
    std::uint64_t sum = 0, multicast = 0;
    for (std::size_t w = 0; w < workers.size(); ++w) {
      const std::uint64_t p = w < peer_bytes_.size() ? peer_bytes_[w] : 0;
      const std::uint64_t m = w < multicast_bytes_.size() ? multicast_bytes_[w] : 0;
      workers[w]["peer_bytes"] = p;
      workers[w]["peer_multicast_bytes"] = m;
      sum += p;
      multicast += m;
    }
    const double count = std::max<double>(1.0, static_cast<double>(workers.size()));
    s["peer_bytes_per_worker"] = static_cast<double>(sum) / count;
    s["peer_multicast_bytes_per_worker"] = static_cast<double>(multicast) / count;
  }
  s["workers"] = workers;
  s["run_dir"] = s_.dir->path();
  for (const auto& [key, value] : extra.items())
    s[key] = value;
  s_.dir->write_summary(s);
}

namespace {}  // namespace

}  // namespace psgd
