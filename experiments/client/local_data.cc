// client's TCP driver, --local_data (experiments/local_data.h): the worker reads its own file
// (its --dataset, else the job's), reports its size, label histogram and how many of its rows
// are the server's test rows (LocalData), and builds its worker once the server's LocalPlan has
// fixed the schedule over every worker's size.
#include <fmt/format.h>

#include "core/error.h"
#include "experiments/client/driver.h"
#include "experiments/format.h"
#include "nn/threads.h"

namespace psgd {

void Client::start_local() {
  const std::string dataset = opts_.dataset.empty() ? spec_.dataset : opts_.dataset;
  nn::keep_freed_memory();
  background(
      [this, dataset] {
        local_ = std::make_unique<LocalFile>(read_local_file(spec_, job_, dataset));
      },
      [this] {
        const LocalData& r = local_->report;
        say(fmt::format(
            "--local_data: its own {}: {} samples, {}, {} of the server's test rows; waiting for "
            "the other workers' sizes",
            r.dataset, fmt_count(static_cast<double>(r.samples)),
            classes_present(r.label_histogram), r.test_rows));
        job_.test_hashes = {};
        conn_->send(r);
      });
}

void Client::on_local_plan(const LocalPlan& plan) {
  if (!local_ || role_ || loading_) {
    give_up("the server sent LocalPlan without --local_data or out of turn", true);
    return;
  }
  if (plan.train_size < local_->report.samples ||
      plan.classes < static_cast<std::int32_t>(local_->report.label_histogram.size())) {
    give_up(fmt::format("the server's LocalPlan (train size {}, {} classes) does not fit this "
                        "worker's {} samples of {} classes",
                        plan.train_size, plan.classes, local_->report.samples,
                        local_->report.label_histogram.size()),
            true);
    return;
  }
  // The schedule is over every worker's samples; the model has the job's classes and the server's
  // sample shape, which a file of another layout with as many features takes (a CSV's rows).
  const std::vector<std::int64_t> own = model_shape(local_->train);
  if (const std::string why = take_model_shape(local_->train, plan.shape); !why.empty()) {
    give_up(fmt::format("--local_data: its own file {}: {}", local_->report.dataset, why), true);
    return;
  }
  if (own != plan.shape) {
    say(fmt::format("--local_data: its rows of {} are taken as the model's {}", shape_text(own),
                    shape_text(plan.shape)));
  }
  job_.train_size = plan.train_size;
  nn::Dataset samples = std::move(local_->train);
  samples.num_classes = plan.classes;
  local_.reset();
  start_with(std::move(samples));
}

}  // namespace psgd
