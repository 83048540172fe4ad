// RunRecorder's state in a checkpoint (experiments/recorder.h): what it has recorded so far, so a
// resumed run continues its metrics, worker rows and totals where the checkpoint left them.
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
          {"validation_accuracy", opt(r.validation_accuracy)},
          {"test_rmse", opt(r.test_rmse)},
          {"test_r2", opt(r.test_r2)},
          {"validation_rmse", opt(r.validation_rmse)},
          {"validation_r2", opt(r.validation_r2)}};
}

MetricsRow row_of(const nlohmann::json& j) {
  auto opt = [&](const char* key) {
    return j.at(key).is_null() ? std::nullopt : std::optional<double>(j.at(key).get<double>());
  };
  // Absent in the checkpoints of runs before regression targets.
  auto maybe = [&](const char* key) { return j.contains(key) ? opt(key) : std::nullopt; };
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
                    .validation_accuracy = opt("validation_accuracy"),
                    .test_rmse = maybe("test_rmse"),
                    .test_r2 = maybe("test_r2"),
                    .validation_rmse = maybe("validation_rmse"),
                    .validation_r2 = maybe("validation_r2")};
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

std::vector<std::uint8_t> RunRecorder::average_state() const {
  if (!average_) return {};
  return average_->state();
}

void RunRecorder::resume_average(std::span<const std::uint8_t> state, std::int64_t iteration) {
  averaged_iteration_ = iteration;
  if (!average_) {
    if (!state.empty()) {
      throw ConfigError("the checkpoint holds a model average but this run averages no model");
    }
    return;
  }
  if (state.empty()) {
    throw ConfigError(
        "the checkpoint holds no model average (written before --model_average was "
        "checkpointed, or with it off) but this run averages the model");
  }
  try {
    average_->restore_state(state);
  } catch (const ProtocolError& e) {
    throw ConfigError(e.what());
  }
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
  // --save_every_epoch: model_best.pt holds the best of the epochs before the checkpoint, which
  // the history says (the first of equals, as when they were written).
  best_model_.reset();
  for (const MetricsRow& r : history_) {
    const double loss = monitored_loss(r);
    if (r.epoch >= 1 && !std::isnan(loss) && (!best_model_ || loss < best_model_->second)) {
      best_model_ = std::make_pair(r.epoch, loss);
    }
  }
  const auto& totals = j.at("totals");
  for (std::size_t w = 0; w < totals_.size() && w < totals.size(); ++w) {
    totals_[w].iterations = totals[w].at("iterations").get<std::int64_t>();
    totals_[w].dropped = totals[w].at("dropped").get<std::int64_t>();
    totals_[w].local_steps = totals[w].at("local_steps").get<std::int64_t>();
    totals_[w].samples = totals[w].at("samples").get<std::int64_t>();
  }
  resumed_ = true;
}

}  // namespace psgd
