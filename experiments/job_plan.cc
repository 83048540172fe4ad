#include "experiments/job_plan.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/seeds.h"
#include "experiments/provenance.h"
#include "nn/data_pack.h"
#include "nn/partition.h"
#include "nn/trainer.h"
#include "psgd/allreduce_overlap.h"
#include "psgd/factory.h"

namespace psgd {

namespace {

// The bytes of --model script:FILE; ConfigError naming the flag when they cannot be read.
std::string read_model_file(const std::string& model, const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec)
    throw ConfigError(fmt::format("--model {}: cannot read {}: {}", model, path, ec.message()));
  if (size > kMaxScriptBytes) {
    throw ConfigError(fmt::format("--model {}: {} is {} MiB; a job carries at most {} MiB", model,
                                  path, size >> 20, kMaxScriptBytes >> 20));
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) {
    throw ConfigError(fmt::format("--model {}: cannot read {}", model, path));
  }
  return bytes;
}

}  // namespace

std::shared_ptr<const std::string> received_model_file(const JobSpec& spec,
                                                       const std::string& bytes,
                                                       const std::string& sha256) {
  if (spec.script_path().empty()) return nullptr;
  const std::string hash =
      nn::sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  if (bytes.empty() || hash != sha256) {
    throw ConfigError(fmt::format(
        "the model file the server sent for --model {} is damaged: {} bytes with sha256 {}, "
        "expected {}",
        spec.model, bytes.size(), hash, sha256));
  }
  return std::make_shared<const std::string>(bytes);
}

JobPlan::JobPlan(const JobSpec& spec) : spec_(spec) {
  if (const std::string path = spec_.script_path(); !path.empty()) {
    std::string bytes = read_model_file(spec_.model, path);
    script_sha256_ = nn::sha256_hex(
        std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    script_ = std::make_shared<const std::string>(std::move(bytes));
  }
  nn::DataSplit loaded = nn::load_dataset(spec_.dataset, spec_.train_samples, spec_.test_samples,
                                          spec_.source_options());
  notes_ = loaded.notes;
  // Accepted but risky: one step of delay leaves SGD with momentum far less room (psgd/options.h).
  // (ssgd's: allreduce's --overlap has no delay.)
  if (spec_.overlap && spec_.psgd == "ssgd" && spec_.optimizer == "sgd" && spec_.momentum > 0) {
    notes_.push_back(fmt::format(
        "--overlap with --momentum {}: gradients one step stale and momentum do not mix well (the "
        "stable learning rate shrinks by 2(1 + m)/(1 - m), {:.0f}x here; the CNN at lr 0.05 and "
        "momentum 0.9 diverged, bench/README.md \"Overlap\"); if the loss grows, lower "
        "--learn_rate or --momentum",
        spec_.momentum, 2 * (1 + spec_.momentum) / (1 - spec_.momentum)));
  }
  // Validation rows are held out per seed; the normaliser sees the remaining training rows only.
  holdout_ = nn::hold_out(static_cast<std::int64_t>(loaded.train.size()), spec_.validation_split,
                          seeds::of(spec_.seed, seeds::kValidation));
  normalizer_ = nn::fit_normalizer(spec_.normalize, loaded.train, holdout_.train);
  if (spec_.ship_data == "always") data_hash_ = nn::content_hash(loaded.train);
  auto split = std::make_shared<nn::DataSplit>();
  if (!holdout_.validation.empty()) {
    split->validation =
        nn::subset(loaded.train, holdout_.validation,
                   loaded.train.name.substr(0, loaded.train.name.rfind(' ')) + " validation");
    normalizer_.apply(split->validation);
  }
  split->test = std::move(loaded.test);
  normalizer_.apply(split->test);
  train_ = std::make_shared<const nn::Dataset>(std::move(loaded.train));
  evaluation_ = split;
  // Blocks are placed over the training rows left after the validation hold-out. --local_data:
  // none (each worker's file is its share); the schedule over the server's rows stands only until
  // set_local_sizes() fixes it over the workers'.
  if (!spec_.local_data) placement_ = place_data(spec_, *train_, holdout_.train);
  schedule_ = make_schedule(spec_, train_rows());
}

void JobPlan::set_local_sizes(nlohmann::json workers) {
  std::int64_t sum = 0;
  for (const auto& w : workers)
    sum += w.at("samples").get<std::int64_t>();
  PSGD_CHECK(spec_.local_data && sum > 0, "local sizes for a job without --local_data");
  local_train_rows_ = sum;
  local_workers_ = std::move(workers);
  schedule_ = make_schedule(spec_, sum);
}

std::vector<std::int64_t> JobPlan::local_samples() const {
  std::vector<std::int64_t> samples;
  for (const auto& w : local_workers_)
    samples.push_back(w.at("samples").get<std::int64_t>());
  return samples;
}

WorkerSetup JobPlan::worker(int w) const {
  WorkerSetup s{
      .worker = w,
      .samples = spec_.local_data ? std::vector<std::int64_t>{} : placement_.samples_of(w),
      .normalizer = normalizer_,
      .train_size = train_rows(),
      .script = script_};
  if (uses_block_streams(spec_)) {
    for (int b : placement_.placement.blocks_of_worker[static_cast<std::size_t>(w)]) {
      s.block_ids.push_back(b);
      s.block_sizes.push_back(
          static_cast<std::int64_t>(placement_.blocks[static_cast<std::size_t>(b)].size()));
    }
  }
  return s;
}

std::unique_ptr<nn::Trainer> JobPlan::make_model() const {
  return std::make_unique<nn::Trainer>(nn::TrainerOptions{.model = spec_.model,
                                                          .target = spec_.target,
                                                          .script = script_,
                                                          .batch_size = spec_.batch_size,
                                                          .seed = spec_.seed,
                                                          .device = spec_.device},
                                       evaluation_, std::vector<std::int64_t>{});
}

std::vector<std::string> JobPlan::model_notes(const nn::Trainer& model) const {
  std::vector<std::string> notes;
  if (spec_.overlap && spec_.psgd == "allreduce") {
    notes.push_back(
        describe_buckets(model.gradients().size(), model.backward_cuts(), bucket_options(spec_)));
  }
  return notes;
}

nlohmann::json JobPlan::config_json(const std::string& command_line, const std::string& run_dir,
                                    std::size_t num_parameters, const nlohmann::json& workers,
                                    const std::vector<std::string>& notes) const {
  nlohmann::json j;
  j["job"] = spec_;
  j["job"]["output"] = run_dir;
  if (!notes.empty()) j["canonicalized"] = notes;
  j["provenance"] = provenance(command_line);
  // The device in effect (--device auto resolves to the CPU in this version, nn/options.h).
  j["model"] = {{"name", spec_.model}, {"parameters", num_parameters}, {"device", "cpu"}};
  if (script_) {
    j["model"]["file"] = spec_.script_path();
    j["model"]["sha256"] = script_sha256_;
  }
  // --model_average as in effect (job.model_average may say auto): the model evaluated and saved.
  const double decay = spec_.model_average_decay();
  j["model_average"] = decay > 0 ? nlohmann::json{{"kind", "ema"}, {"decay", decay}}
                                 : nlohmann::json{{"kind", "off"}};
  // The optimiser in effect: its rate after --lr_scaling and the schedule (core/lr_schedule.h).
  const OptimizerSpec optimizer = optimizer_spec(spec_, schedule_);
  j["optimizer"] = {{"name", optimizer.name},
                    {"learn_rate", optimizer.schedule.base()},
                    {"schedule", optimizer.schedule.describe()},
                    {"momentum_at_worker", momentum_at_worker(spec_)}};
  j["data"] = {
      {"dataset", spec_.dataset},
      {"train_samples",
       spec_.local_data ? local_train_rows_ : static_cast<std::int64_t>(holdout_.train.size())},
      {"test_samples", evaluation_->test.size()},
      {"validation_samples", holdout_.validation.size()},
      {"blocks", placement_.blocks.size()},
      {"shape", {train_->channels, train_->height, train_->width}},
      {"classes",
       train_->target_dims > 0 ? nlohmann::json(nullptr) : nlohmann::json(train_->num_classes)},
      {"regression_targets", train_->target_dims},
      {"target", spec_.target},
      // The statistics every process applies, (x - shift) * scale per feature.
      {"normalizer",
       {{"kind", normalizer_.kind}, {"shift", normalizer_.shift}, {"scale", normalizer_.scale}}}};
  if (spec_.ship_data == "always") j["data"]["sha256"] = data_hash_;
  // --local_data: the training rows are the workers' own (train_samples is their sum); the
  // server's --dataset gave the test set, and its own training rows are not used.
  if (spec_.local_data) j["data"]["server_train_samples_unused"] = holdout_.train.size();
  j["schedule"] = {{"iterations_per_epoch", schedule_.iterations_per_epoch},
                   {"total_iterations", schedule_.total_iterations()},
                   {"global_batch", batches_per_round(spec_) * spec_.batch_size}};
  j["seed"] = spec_.seed;
  nlohmann::json entries = nlohmann::json::array();
  for (int w = 0; w < spec_.node_count && spec_.local_data; ++w) {
    nlohmann::json e{{"worker", w}};
    if (static_cast<std::size_t>(w) < local_workers_.size()) {
      for (const char* key : {"samples", "label_histogram", "dataset", "test_rows"})
        e[key] = local_workers_[static_cast<std::size_t>(w)].at(key);
    }
    if (workers.is_array() && static_cast<std::size_t>(w) < workers.size()) {
      e.update(workers[static_cast<std::size_t>(w)]);
    }
    entries.push_back(std::move(e));
  }
  for (int w = 0; w < spec_.node_count && !spec_.local_data; ++w) {
    const auto samples = placement_.samples_of(w);
    nlohmann::json e{
        {"worker", w},
        {"blocks", placement_.placement.blocks_of_worker[static_cast<std::size_t>(w)]},
        {"samples", samples.size()},
        {"label_histogram", nn::label_histogram(train_->labels, samples, train_->num_classes)}};
    if (workers.is_array() && static_cast<std::size_t>(w) < workers.size()) {
      e.update(workers[static_cast<std::size_t>(w)]);
    }
    entries.push_back(std::move(e));
  }
  j["workers"] = std::move(entries);
  return j;
}

}  // namespace psgd
