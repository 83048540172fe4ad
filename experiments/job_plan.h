#pragma once
// JobPlan: the one place a run is assembled from its JobSpec (DESIGN.md "One job plan").
//
// init_server (experiments/server.cc) and --simulate (experiments/simulate.cc) both make their run
// from a JobPlan, and every worker, a client process or a simulated one, is set up by the same
// functions (experiments/worker_setup.h) from the WorkerSetup the plan gives it (a real worker
// receives it in its Job message). So a flag means the same in every driver: the data are read
// with the same label column, normalised with statistics fitted on the same training rows, the
// same rows are held out for validation, the same blocks are placed on the same workers, and the
// schedule, model and seeds are the same (core/seeds.h names every random stream).
//
//   0. read --model script:FILE once (its bytes go to every worker with the job);
//   1. load --dataset (with --label_column, --train_samples, --test_samples);
//   2. hold out --validation_split of the training rows (seed stream kValidation);
//   3. fit --normalize on the remaining training rows only; apply it to test and validation rows
//      here, and to each worker's samples where they are loaded;
//   4. place the training rows in blocks (--block_assignment) and the blocks on workers
//      (--redundancy, the coded scheme's layout);
//   5. the schedule (psgd::make_schedule over the training rows).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "experiments/job_spec.h"
#include "experiments/placement.h"
#include "nn/data_source.h"
#include "nn/normalize.h"
#include "psgd/context.h"

namespace psgd {

namespace nn {
class Trainer;
}

// What one worker needs besides the job, as the server's Job message carries it.
struct WorkerSetup {
  int worker = 0;
  std::vector<std::int64_t> samples;  // rows of the training set, in block order
  // Coded schemes: the blocks `samples` is the concatenation of, and their sizes (one batch
  // stream per block, nn::TrainerOptions::block_ids); empty otherwise.
  std::vector<std::int64_t> block_ids;
  std::vector<std::int64_t> block_sizes;
  nn::Normalizer normalizer;     // fitted by the plan; applied to the samples where they are read
  std::int64_t train_size = 0;   // training rows of the whole job (the schedule is over these)
  std::int64_t start_batch = 0;  // batches of this worker's order already drawn (resume, take-over)
  // --model script:FILE: the file's bytes, read once by the plan (a client: received in its Job).
  std::shared_ptr<const std::string> script;
};

class JobPlan {
 public:
  // Steps 1-5 above. Throws ConfigError (missing data, a split that leaves nothing, ...).
  explicit JobPlan(const JobSpec& spec);

  const JobSpec& spec() const { return spec_; }
  // The training set as read, not normalised (shipped from here with --ship_data, and subset by
  // workers that read their own copy).
  const std::shared_ptr<const nn::Dataset>& train() const { return train_; }
  // The test set and the validation rows, normalised: what the server evaluates.
  const std::shared_ptr<const nn::DataSplit>& evaluation() const { return evaluation_; }
  const nn::HoldOut& holdout() const { return holdout_; }
  const nn::Normalizer& normalizer() const { return normalizer_; }
  const DataPlacement& placement() const { return placement_; }
  const Schedule& schedule() const { return schedule_; }
  // nn::content_hash of the training set as read (computed when --ship_data asks for it).
  const std::string& data_hash() const { return data_hash_; }
  std::int64_t train_rows() const { return static_cast<std::int64_t>(holdout_.train.size()); }
  // What reading the data found worth saying (classes without samples), one line each.
  const std::vector<std::string>& notes() const { return notes_; }
  // --model script:FILE: the file's bytes and their SHA-256 (hex); null and "" otherwise.
  const std::shared_ptr<const std::string>& script() const { return script_; }
  const std::string& script_sha256() const { return script_sha256_; }

  WorkerSetup worker(int w) const;
  // --local_data, once every worker has reported its own file (experiments/local_data.h): one
  // entry per worker (local_data_json: samples, label_histogram, dataset, test_rows). Fixes the
  // schedule over the sum of their samples; config_json() records them.
  void set_local_sizes(nlohmann::json workers);
  // --local_data: the sum of the workers' samples (0 until set_local_sizes()).
  std::int64_t local_train_rows() const { return local_train_rows_; }
  // --local_data: each worker's reported samples, by worker id (empty until set_local_sizes()).
  std::vector<std::int64_t> local_samples() const;

  // The model the server holds and evaluates (no training samples of its own).
  std::unique_ptr<nn::Trainer> make_model() const;
  // What the job will do with that model worth saying at its start, one line each (allreduce
  // --overlap: its buckets, or why nothing overlaps). init_server and --simulate print them.
  std::vector<std::string> model_notes(const nn::Trainer& model) const;

  // config.json as every driver writes it: the job, provenance, model, data (with the normaliser
  // and the hold-out), schedule and one entry per worker (its blocks, samples and label
  // histogram). `workers` adds what only the driver knows to each worker's entry (host, pid,
  // build, slowdown); `notes` are canonicalize()'s rewrites.
  nlohmann::json config_json(const std::string& command_line, const std::string& run_dir,
                             std::size_t num_parameters, const nlohmann::json& workers,
                             const std::vector<std::string>& notes) const;

 private:
  JobSpec spec_;
  std::shared_ptr<const nn::Dataset> train_;
  std::shared_ptr<const nn::DataSplit> evaluation_;
  nn::HoldOut holdout_;
  nn::Normalizer normalizer_;
  DataPlacement placement_;
  Schedule schedule_;
  std::string data_hash_;
  std::vector<std::string> notes_;
  std::shared_ptr<const std::string> script_;
  std::string script_sha256_;
  std::int64_t local_train_rows_ = 0;  // --local_data: the sum of the workers' samples
  nlohmann::json local_workers_ = nlohmann::json::array();
};

// What a worker does with the model file its Job carries (--model script:FILE): the bytes, once
// their SHA-256 is the one the server sent with them; ConfigError saying both otherwise (a file
// damaged on the way is never loaded). Null for a built-in model.
std::shared_ptr<const std::string> received_model_file(const JobSpec& spec,
                                                       const std::string& bytes,
                                                       const std::string& sha256);

// The largest TorchScript file a job can carry (it travels in the Job message, network/frame.h).
inline constexpr std::size_t kMaxScriptBytes = 128u << 20;

}  // namespace psgd
