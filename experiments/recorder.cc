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
      learn_rate_(spec_, spec_.learn_rate, spec_.node_count, s_.schedule.iterations_per_epoch,
                  s_.schedule.epochs),
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
    // The epoch's rate counts from here, samples as well as time: those before the resume were
    // trained in the earlier process's time.
    samples_at_epoch_start_ = samples_total_;
    started_ = true;
    fmt::print("{}: resuming at epoch {}/{} ({:.1f} s trained before)\n", s_.log_prefix, epoch_,
               spec_.epochs, wall_before_);
    std::fflush(stdout);
    return;
  }
  const EvalStats initial = s_.model->evaluate();
  MetricsRow row{.epoch = 0,
                 .virtual_s = s_.virtual_clock ? std::optional<double>(0.0) : std::nullopt,
                 .learn_rate = learn_rate_.rate(0)};
  row.set_eval(initial);
  divergence_.evaluated(0, 0, "test loss", initial.loss);
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
  divergence_.round(epoch_ + 1, stats.iteration, stats.train_loss);
  epoch_rounds_ += 1;
  samples_total_ += stats.samples;
}

void RunRecorder::end_epoch(std::int64_t iteration) {
  ++epoch_;
  const double epoch_s = s_.wall->now() - epoch_wall_start_;
  PendingEpoch p;
  const double eval_start = s_.wall->now();
  const bool averaged = average_ && average_->average(averaged_);
  if (averaged) {
    p.eval = evaluate(averaged_);
  } else {
    p.eval = evaluate({});
  }
  // The last iterate too, once, for comparison. In the background its evaluation counts neither in
  // eval_seconds nor, as it is waited for after the last row is written, in wall_seconds (starting
  // it waits for the average's evaluation, which counts as that wait always did).
  if (average_ && epoch_ == spec_.epochs) p.iterate = evaluate({});
  eval_seconds_ += s_.wall->now() - eval_start;
  if (spec_.save_every_epoch) {
    const std::span<const float> evaluated = averaged
                                                 ? std::span<const float>(averaged_)
                                                 : std::span<const float>(s_.model->parameters());
    p.parameters.assign(evaluated.begin(), evaluated.end());
    const std::span<const float> buffers = s_.model->buffers();
    p.buffers.assign(buffers.begin(), buffers.end());
  }
  Traffic total;
  std::vector<Traffic> now(rows_.size());
  for (int w = 0; w < spec_.node_count; ++w) {
    now[w] = s_.traffic(w);
    total.up += now[w].up;
    total.down += now[w].down;
  }
  p.row = MetricsRow{
      .epoch = epoch_,
      .iteration = iteration,
      .wall_s = wall_since_start(),
      .virtual_s = virtual_since_start(),
      .train_loss = epoch_rounds_ ? epoch_loss_sum_ / epoch_rounds_ : 0.0,
      .bytes_up = total.up - at_start_.up + before_.up,
      .bytes_down = total.down - at_start_.down + before_.down,
      .samples = samples_total_,
      // The rate of this epoch's last iteration.
      .learn_rate = learn_rate_.rate(
          std::min(epoch_ * s_.schedule.iterations_per_epoch, s_.schedule.total_iterations()) - 1)};
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
    if (!wait &&
        pending_.front().eval.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return;
    }
    // Taken off the queue before anything is written: a row that cannot be written (a full disk,
    // IoError) is not written twice, and the epoch still counts in history() and the summary.
    PendingEpoch p = std::move(pending_.front());
    pending_.pop_front();
    const double wait_start = s_.wall->now();
    const EvalStats eval = p.eval.get();
    eval_seconds_ += s_.wall->now() - wait_start;
    MetricsRow& row = p.row;
    row.set_eval(eval);
    divergence_.evaluated(row.epoch, row.iteration, "test loss", eval.loss);
    if (row.validation_loss) {
      divergence_.evaluated(row.epoch, row.iteration, "validation loss", *row.validation_loss);
    }
    if (!s_.evaluate_async) row.wall_s = wall_since_start();  // the evaluation held training up
    history_.push_back(row);
    if (row.epoch == spec_.epochs) final_wall_ = wall_since_start();
    if (p.iterate.valid()) final_iterate_ = p.iterate.get();
    std::string vtime;
    if (row.virtual_s) vtime = fmt::format("  virtual {:.2f} s", *row.virtual_s);
    std::string validation;
    if (row.validation_loss) {
      validation = row.validation_rmse
                       ? fmt::format("  val_loss {:.4f}  val_rmse {:.4g}  val_r2 {:.4f}",
                                     *row.validation_loss, *row.validation_rmse,
                                     row.validation_r2.value_or(NAN))
                       : fmt::format("  val_loss {:.4f}  val_acc {}", *row.validation_loss,
                                     percent(row.validation_accuracy.value_or(NAN)));
    }
    const std::string score = row.test_rmse
                                  ? fmt::format("test_rmse {:.4g}  test_r2 {:.4f}", *row.test_rmse,
                                                row.test_r2.value_or(NAN))
                                  : fmt::format("test_acc {:>7}", percent(row.test_accuracy));
    fmt::print(
        "epoch {:>3}/{}  iter {:>6}  train_loss {:.4f}  test_loss {:.4f}  {}{}  "
        "{:>8} samples/s  elapsed {}  ETA {}{}\n",
        row.epoch, spec_.epochs, row.iteration, *row.train_loss, row.test_loss, score, validation,
        fmt_count(p.rate), fmt_duration(row.wall_s), fmt_duration(p.eta), vtime);
    std::fflush(stdout);
    s_.dir->append_metrics(row, s_.metrics_wall);
    for (const WorkerRow& r : p.workers)
      s_.dir->append_worker(r);
    if (spec_.save_every_epoch) save_epoch_model(p);
    if (on_epoch_) on_epoch_(row, p.workers);
  }
}

double RunRecorder::monitored_loss(const MetricsRow& row) {
  return row.validation_loss ? *row.validation_loss : row.test_loss;
}

void RunRecorder::save_epoch_model(const PendingEpoch& p) {
  PSGD_CHECK(static_cast<bool>(s_.save_model), "--save_every_epoch without a model writer");
  const std::span<float> own = s_.model->parameters();
  const std::span<float> own_buffers = s_.model->buffers();
  PSGD_CHECK_EQ(p.parameters.size(), own.size(), "epoch model of another size");
  PSGD_CHECK_EQ(p.buffers.size(), own_buffers.size(), "epoch buffers of another size");
  // The epoch's model goes into `model` for the writes, and the live one back afterwards (same
  // thread as the role that updates it).
  std::vector<float> live(own.begin(), own.end());
  std::vector<float> live_buffers(own_buffers.begin(), own_buffers.end());
  std::copy(p.parameters.begin(), p.parameters.end(), own.begin());
  std::copy(p.buffers.begin(), p.buffers.end(), own_buffers.begin());
  auto restore = [&] {
    std::copy(live.begin(), live.end(), own.begin());
    std::copy(live_buffers.begin(), live_buffers.end(), own_buffers.begin());
  };
  try {
    s_.save_model(fmt::format("_epoch_{}", p.row.epoch));
    const double loss = monitored_loss(p.row);
    if (!std::isnan(loss) && (!best_model_ || loss < best_model_->second)) {
      s_.save_model("_best");
      best_model_ = std::make_pair(p.row.epoch, loss);
    }
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

std::string RunRecorder::progress(std::int64_t iteration) const {
  if (!started_ || epoch_ >= spec_.epochs) return "";
  const std::int64_t in_epoch = iteration - epoch_ * s_.schedule.iterations_per_epoch;
  const double rate = (samples_total_ - samples_at_epoch_start_) /
                      std::max(s_.wall->now() - epoch_wall_start_, 1e-9);
  return fmt::format("  epoch {}/{}: {}/{} iterations, {} samples/s", epoch_ + 1, spec_.epochs,
                     in_epoch, s_.schedule.iterations_per_epoch, fmt_count(rate));
}

}  // namespace psgd
