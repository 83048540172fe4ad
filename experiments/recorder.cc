#include "experiments/recorder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

// "85.21%", or "n/a" for a reconstruction target.
std::string percent(double accuracy) {
  return std::isnan(accuracy) ? std::string("n/a") : fmt::format("{:.2f}%", 100 * accuracy);
}

}  // namespace

RunRecorder::RunRecorder(RecorderSetup setup)
    : s_(std::move(setup)),
      spec_(*s_.spec),
      hosts_(static_cast<std::size_t>(spec_.node_count)),
      rows_(static_cast<std::size_t>(spec_.node_count)),
      totals_(static_cast<std::size_t>(spec_.node_count)),
      staleness_histogram_(static_cast<std::size_t>(spec_.node_count)),
      marks_(static_cast<std::size_t>(spec_.node_count)) {
  PSGD_CHECK(s_.spec && s_.dir && s_.model && s_.wall && s_.traffic, "incomplete recorder setup");
  if (s_.average_decay > 0) {
    average_ = std::make_unique<ModelAverage>(s_.average_decay, s_.model->parameters().size());
    averaged_.resize(s_.model->parameters().size());
  }
}

std::shared_future<EvalStats> RunRecorder::evaluate(std::span<const float> parameters) {
  if (s_.evaluate_async)
    return s_.evaluate_async(parameters.empty() ? s_.model->parameters() : parameters);
  std::promise<EvalStats> done;
  if (parameters.empty()) {
    done.set_value(s_.model->evaluate());
  } else {  // evaluate `parameters` in the model, then put its own back
    const std::span<float> own = s_.model->parameters();
    live_.assign(own.begin(), own.end());
    std::copy(parameters.begin(), parameters.end(), own.begin());
    done.set_value(s_.model->evaluate());
    std::copy(live_.begin(), live_.end(), own.begin());
  }
  return done.get_future().share();
}

void RunRecorder::load_evaluated_model() {
  if (average_) average_->average(s_.model->parameters());
}

double RunRecorder::wall_since_start() const {
  return wall_before_ + s_.wall->now() - wall_start_;
}

namespace {

nlohmann::json row_json(const MetricsRow& r) {
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  return {{"epoch", r.epoch},
          {"iteration", r.iteration},
          {"wall_s", r.wall_s},
          {"virtual_s", opt(r.virtual_s)},
          {"train_loss", opt(r.train_loss)},
          {"test_loss", r.test_loss},
          {"test_accuracy",
           std::isnan(r.test_accuracy) ? nlohmann::json(nullptr) : nlohmann::json(r.test_accuracy)},
          {"bytes_up", r.bytes_up},
          {"bytes_down", r.bytes_down},
          {"samples", r.samples},
          {"validation_loss", opt(r.validation_loss)},
          {"validation_accuracy", opt(r.validation_accuracy)}};
}

MetricsRow row_of(const nlohmann::json& j) {
  auto opt = [&](const char* key) {
    return j.at(key).is_null() ? std::nullopt : std::optional<double>(j.at(key).get<double>());
  };
  return MetricsRow{.epoch = j.at("epoch").get<int>(),
                    .iteration = j.at("iteration").get<std::int64_t>(),
                    .wall_s = j.at("wall_s").get<double>(),
                    .virtual_s = opt("virtual_s"),
                    .train_loss = opt("train_loss"),
                    .test_loss = j.at("test_loss").get<double>(),
                    .test_accuracy = opt("test_accuracy").value_or(NAN),
                    .bytes_up = j.at("bytes_up").get<std::uint64_t>(),
                    .bytes_down = j.at("bytes_down").get<std::uint64_t>(),
                    .samples = j.at("samples").get<std::int64_t>(),
                    .validation_loss = opt("validation_loss"),
                    .validation_accuracy = opt("validation_accuracy")};
}

}  // namespace

nlohmann::json RunRecorder::snapshot(std::int64_t iteration) const {
  (void)iteration;
  PSGD_CHECK(pending_.empty(), "recorder snapshot with {} evaluations pending", pending_.size());
  Traffic total;
  for (int w = 0; w < spec_.node_count; ++w) {
    const Traffic t = s_.traffic(w);
    total.up += t.up;
    total.down += t.down;
  }
  nlohmann::json history = nlohmann::json::array();
  for (const auto& r : history_)
    history.push_back(row_json(r));
  nlohmann::json totals = nlohmann::json::array();
  for (const auto& t : totals_) {
    totals.push_back({{"iterations", t.iterations},
                      {"dropped", t.dropped},
                      {"local_steps", t.local_steps},
                      {"samples", t.samples}});
  }
  return {{"epoch", epoch_},
          {"wall_s", started_ ? wall_since_start() : wall_before_},
          {"bytes_up", total.up - at_start_.up + before_.up},
          {"bytes_down", total.down - at_start_.down + before_.down},
          {"samples_total", samples_total_},
          {"samples_at_epoch_start", samples_at_epoch_start_},
          {"epoch_loss_sum", epoch_loss_sum_},
          {"epoch_rounds", epoch_rounds_},
          {"rounds_short", rounds_short_},
          {"eval_s", eval_seconds_},
          {"history", history},
          {"totals", totals}};
}

void RunRecorder::resume(const nlohmann::json& j) {
  epoch_ = j.at("epoch").get<int>();
  wall_before_ = j.at("wall_s").get<double>();
  before_ = Traffic{.up = j.at("bytes_up").get<std::uint64_t>(),
                    .down = j.at("bytes_down").get<std::uint64_t>()};
  samples_total_ = j.at("samples_total").get<std::int64_t>();
  samples_at_epoch_start_ = j.at("samples_at_epoch_start").get<std::int64_t>();
  epoch_loss_sum_ = j.at("epoch_loss_sum").get<double>();
  epoch_rounds_ = j.at("epoch_rounds").get<std::int64_t>();
  rounds_short_ = j.at("rounds_short").get<std::int64_t>();
  eval_seconds_ = j.value("eval_s", 0.0);
  history_.clear();
  for (const auto& r : j.at("history"))
    history_.push_back(row_of(r));
  const auto& totals = j.at("totals");
  for (std::size_t w = 0; w < totals_.size() && w < totals.size(); ++w) {
    totals_[w].iterations = totals[w].at("iterations").get<std::int64_t>();
    totals_[w].dropped = totals[w].at("dropped").get<std::int64_t>();
    totals_[w].local_steps = totals[w].at("local_steps").get<std::int64_t>();
    totals_[w].samples = totals[w].at("samples").get<std::int64_t>();
  }
  resumed_ = true;
}

std::optional<double> RunRecorder::virtual_since_start() const {
  if (!s_.virtual_clock) return std::nullopt;
  return s_.virtual_clock->now() - virtual_start_;
}

void RunRecorder::start() {
  if (resumed_) {
    for (int w = 0; w < spec_.node_count; ++w) {
      marks_[w] = s_.traffic(w);
      at_start_.up += marks_[w].up;
      at_start_.down += marks_[w].down;
    }
    wall_start_ = epoch_wall_start_ = s_.wall->now();
    started_ = true;
    fmt::print("{}: resuming at epoch {}/{} ({:.1f} s trained before)\n", s_.log_prefix, epoch_,
               spec_.epochs, wall_before_);
    std::fflush(stdout);
    return;
  }
  const EvalStats initial = s_.model->evaluate();
  MetricsRow row{.epoch = 0,
                 .virtual_s = s_.virtual_clock ? std::optional<double>(0.0) : std::nullopt,
                 .test_loss = initial.loss,
                 .test_accuracy = initial.accuracy,
                 .validation_loss = initial.validation_loss,
                 .validation_accuracy = initial.validation_accuracy};
  s_.dir->append_metrics(row, s_.metrics_wall);
  history_.push_back(row);
  if (on_epoch_) on_epoch_(row, {});
  fmt::print("{}: training for {} epochs; initial test loss {:.4f}, accuracy {}\n", s_.log_prefix,
             spec_.epochs, initial.loss, percent(initial.accuracy));
  std::fflush(stdout);
  for (int w = 0; w < spec_.node_count; ++w) {
    marks_[w] = s_.traffic(w);
    at_start_.up += marks_[w].up;
    at_start_.down += marks_[w].down;
  }
  wall_start_ = epoch_wall_start_ = s_.wall->now();
  if (s_.virtual_clock) virtual_start_ = s_.virtual_clock->now();
  started_ = true;
}

int RunRecorder::after_dispatch(std::int64_t iteration) {
  write_evaluated(/*wait=*/false);
  if (average_ && started_ && iteration > averaged_iteration_) {
    average_->add(s_.model->parameters(), iteration - averaged_iteration_);
    averaged_iteration_ = iteration;
  }
  while (started_ && epoch_ < spec_.epochs &&
         iteration >= (epoch_ + 1) * s_.schedule.iterations_per_epoch) {
    end_epoch(iteration);
  }
  return epoch_;
}

namespace {

constexpr std::size_t kStalenessBins = 64;

void add_report(WorkerRow& row, const WorkerReport& report) {
  row.times += report.times;
  row.held_s += report.held_s;
  row.local_steps += report.local_steps;
  if (report.dropped) {
    row.dropped += 1;
    return;
  }
  row.iterations += 1;
  row.samples += report.samples;
  row.staleness_sum += report.staleness;
  row.staleness_max = std::max(row.staleness_max, report.staleness);
  row.add_compression_error(report.compression_error);
}

}  // namespace

void RunRecorder::on_worker(NodeId w, const WorkerReport& report) {
  const auto i = static_cast<std::size_t>(w);
  add_report(rows_.at(i), report);
  add_report(totals_.at(i), report);
  if (peer_bytes_.size() <= i) {
    peer_bytes_.resize(i + 1, 0);
    multicast_bytes_.resize(i + 1, 0);
  }
  peer_bytes_[i] += report.payload_bytes;
  multicast_bytes_[i] += report.multicast_bytes;
  if (!report.dropped) {
    auto& h = staleness_histogram_[i];
    const auto bin = std::min<std::size_t>(
        static_cast<std::size_t>(std::max<std::int64_t>(0, report.staleness)), kStalenessBins - 1);
    if (h.size() <= bin) h.resize(bin + 1, 0);
    ++h[bin];
  }
}

void RunRecorder::on_round(const RoundStats& stats) {
  if (stats.missing > 0) ++rounds_short_;
  epoch_loss_sum_ += stats.train_loss;
  epoch_rounds_ += 1;
  samples_total_ += stats.samples;
}

void RunRecorder::end_epoch(std::int64_t iteration) {
  ++epoch_;
  const double epoch_s = s_.wall->now() - epoch_wall_start_;
  PendingEpoch p;
  const double eval_start = s_.wall->now();
  if (average_ && average_->average(averaged_)) {
    p.eval = evaluate(averaged_);
  } else {
    p.eval = evaluate({});
  }
  // The last iterate too, once, for comparison. In the background its evaluation counts neither in
  // eval_seconds nor, as it is waited for after the last row is written, in wall_seconds (starting
  // it waits for the average's evaluation, which counts as that wait always did).
  if (average_ && epoch_ == spec_.epochs) p.iterate = evaluate({});
  eval_seconds_ += s_.wall->now() - eval_start;
  Traffic total;
  std::vector<Traffic> now(rows_.size());
  for (int w = 0; w < spec_.node_count; ++w) {
    now[w] = s_.traffic(w);
    total.up += now[w].up;
    total.down += now[w].down;
  }
  p.row = MetricsRow{.epoch = epoch_,
                     .iteration = iteration,
                     .wall_s = wall_since_start(),
                     .virtual_s = virtual_since_start(),
                     .train_loss = epoch_rounds_ ? epoch_loss_sum_ / epoch_rounds_ : 0.0,
                     .bytes_up = total.up - at_start_.up + before_.up,
                     .bytes_down = total.down - at_start_.down + before_.down,
                     .samples = samples_total_};
  for (std::size_t w = 0; w < rows_.size(); ++w) {
    WorkerRow& r = rows_[w];
    r.epoch = epoch_;
    r.worker = static_cast<int>(w);
    r.host = hosts_[w];
    r.transfer_s = std::max(0.0, r.times.wait_s - r.held_s);
    r.bytes_up = now[w].up - marks_[w].up;
    r.bytes_down = now[w].down - marks_[w].down;
    marks_[w] = now[w];
    p.workers.push_back(r);
    r = WorkerRow{};
  }
  p.rate = (samples_total_ - samples_at_epoch_start_) / std::max(epoch_s, 1e-9);
  p.eta = p.row.wall_s / epoch_ * (spec_.epochs - epoch_);
  pending_.push_back(std::move(p));
  epoch_loss_sum_ = 0;
  epoch_rounds_ = 0;
  samples_at_epoch_start_ = samples_total_;
  epoch_wall_start_ = s_.wall->now();
  write_evaluated(/*wait=*/!s_.evaluate_async);
}

void RunRecorder::write_evaluated(bool wait) {
  while (!pending_.empty()) {
    PendingEpoch& p = pending_.front();
    if (!wait && p.eval.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    const double wait_start = s_.wall->now();
    const EvalStats eval = p.eval.get();
    eval_seconds_ += s_.wall->now() - wait_start;
    MetricsRow& row = p.row;
    row.test_loss = eval.loss;
    row.test_accuracy = eval.accuracy;
    row.validation_loss = eval.validation_loss;
    row.validation_accuracy = eval.validation_accuracy;
    if (!s_.evaluate_async) row.wall_s = wall_since_start();  // the evaluation held training up
    s_.dir->append_metrics(row, s_.metrics_wall);
    history_.push_back(row);
    for (const WorkerRow& r : p.workers)
      s_.dir->append_worker(r);
    if (on_epoch_) on_epoch_(row, p.workers);
    if (row.epoch == spec_.epochs) final_wall_ = wall_since_start();
    if (p.iterate.valid()) final_iterate_ = p.iterate.get();
    std::string vtime;
    if (row.virtual_s) vtime = fmt::format("  virtual {:.2f} s", *row.virtual_s);
    std::string validation;
    if (row.validation_loss) {
      validation = fmt::format("  val_loss {:.4f}  val_acc {}", *row.validation_loss,
                               percent(row.validation_accuracy.value_or(NAN)));
    }
    fmt::print(
        "epoch {:>3}/{}  iter {:>6}  train_loss {:.4f}  test_loss {:.4f}  test_acc {:>7}{}  "
        "{:>8} samples/s  elapsed {}  ETA {}{}\n",
        row.epoch, spec_.epochs, row.iteration, *row.train_loss, row.test_loss,
        percent(row.test_accuracy), validation, fmt_count(p.rate), fmt_duration(row.wall_s),
        fmt_duration(p.eta), vtime);
    std::fflush(stdout);
    pending_.pop_front();
  }
}

std::string RunRecorder::progress(std::int64_t iteration) const {
  if (!started_ || epoch_ >= spec_.epochs) return "";
  const std::int64_t in_epoch = iteration - epoch_ * s_.schedule.iterations_per_epoch;
  const double rate = (samples_total_ - samples_at_epoch_start_) /
                      std::max(s_.wall->now() - epoch_wall_start_, 1e-9);
  return fmt::format("  epoch {}/{}: {}/{} iterations, {} samples/s", epoch_ + 1, spec_.epochs,
                     in_epoch, s_.schedule.iterations_per_epoch, fmt_count(rate));
}

void RunRecorder::finish(const std::string& status, bool ok, std::int64_t iterations,
                         const nlohmann::json& extra) {
  write_evaluated(/*wait=*/true);
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
  s["final_test_accuracy"] = or_null(has_accuracy, has_accuracy ? last->test_accuracy : 0);
  s["final_test_loss"] = or_null(last, last ? last->test_loss : 0);
  s["final_train_loss"] =
      or_null(last && last->train_loss, last && last->train_loss ? *last->train_loss : 0);
  s["best_test_accuracy"] = or_null(has_accuracy, best);
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
    // counted once (psgd/ccdc.h explains why both matter).
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
