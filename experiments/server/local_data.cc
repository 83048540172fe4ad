// init_server's TCP driver, --local_data (experiments/local_data.h): each worker reports its own
// file (LocalData); the server checks it against its model and its test set, prints one line per
// worker, and once every report is in fixes the schedule over the sum of their samples, remakes
// the checkpointer and the recorder over it, writes config.json and sends every worker LocalPlan.
#include <fmt/format.h>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/local_data.h"
#include "experiments/server/driver.h"

namespace psgd {

void Server::on_local_data(int w, const LocalData& report) {
  auto& slot = workers_[w];
  const bool rejoining = slot.rejoining && phase_ == Phase::kTraining;
  if (!spec_.local_data || (phase_ != Phase::kLoading && !rejoining) ||
      (!rejoining && !local_reports_[static_cast<std::size_t>(w)].is_null())) {
    if (slot.rejoining) {
      drop_replacement(w, "sent LocalData out of turn");
      return;
    }
    fail(fmt::format("worker {} sent LocalData out of turn", w));
    return;
  }
  const nlohmann::json entry = local_data_json(w, slot.host(), report);
  std::string refusal = local_data_refusal(report, *plan_->train(), w, slot.where());
  if (rejoining) {
    // A client taking over the slot must bring the file the schedule was fixed with.
    const auto& before = local_reports_[static_cast<std::size_t>(w)];
    if (refusal.empty() && (before.at("samples") != entry.at("samples") ||
                            before.at("label_histogram") != entry.at("label_histogram"))) {
      refusal = fmt::format(
          "worker {} ({}): its own file {} holds {} samples ({}), but the job's schedule was "
          "fixed with worker {}'s file of {} samples ({}); a client taking over a slot must "
          "bring the same file",
          w, slot.where(), report.dataset, report.samples, classes_present(report.label_histogram),
          w, before.at("samples").get<std::int64_t>(),
          classes_present(before.at("label_histogram").get<std::vector<std::int64_t>>()));
    }
    if (!refusal.empty()) {
      drop_replacement(w, refusal);
      return;
    }
    slot.link->send(LocalPlan{.train_size = plan_->local_train_rows(),
                              .classes = plan_->train()->num_classes,
                              .shape = model_shape(*plan_->train())});
    return;
  }
  local_reports_[static_cast<std::size_t>(w)] = entry;
  if (!refusal.empty()) {
    fail(refusal);
    return;
  }
  const std::vector<std::int64_t> shape = model_shape(*plan_->train());
  fmt::print(
      "init_server: worker {} ({}) trains on its own {}: {} samples, {}, none of the "
      "server's test rows{}\n",
      w, slot.where(), report.dataset, fmt_count(static_cast<double>(report.samples)),
      classes_present(report.label_histogram),
      report.shape == shape ? std::string()
                            : fmt::format(" (its rows of {} taken as the model's {})",
                                          shape_text(report.shape), shape_text(shape)));
  std::fflush(stdout);
  for (const auto& r : local_reports_)
    if (r.is_null()) return;
  fix_local_schedule();
}

void Server::fix_local_schedule() {
  plan_->set_local_sizes(local_reports_);
  schedule_ = plan_->schedule();
  checkpointer_ = std::make_unique<Checkpointer>(spec_, schedule_, model_->num_parameters(),
                                                 model_->num_buffers(), plan_->script_sha256());
  make_recorder();
  const std::int64_t sum = plan_->local_train_rows();
  fmt::print("init_server: the workers hold {} samples in all: {} iterations per epoch\n",
             fmt_count(static_cast<double>(sum)), schedule_.iterations_per_epoch);
  std::fflush(stdout);
  try {
    run_->write_config(config_json());
  } catch (const IoError& e) {
    fail(e.what());
    return;
  }
  const LocalPlan plan{.train_size = sum,
                       .classes = plan_->train()->num_classes,
                       .shape = model_shape(*plan_->train())};
  for (int w = 0; w < workers_.size(); ++w)
    workers_[w].link->send(plan);
}

}  // namespace psgd
