#pragma once
// JobSpec: everything that defines a training job, composed of each component's options
// (core/fields.h): the strategy layer's (psgd/job.h: cluster, strategy, codec, optimiser, model
// averaging), the data's and the model's (nn/options.h), --delay (core/straggler.h) and the run's
// own below. init_server builds it from flags and/or a JSON file (experiments/cli.h), canonicalises
// and validates it once, records it in config.json and sends it to every worker, so the server,
// the workers, the simulator and the report all read the same values. JSON keys equal the flag
// names; members keep them too (spec.node_count, spec.codec).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/fields.h"
#include "core/straggler.h"
#include "nn/options.h"
#include "psgd/job.h"

namespace psgd {

// Where and how a run goes: its ports and directory, timeouts, threads, checkpoints, data
// shipping. Nothing here changes what is computed (job_config_hash leaves these out, except
// ship_data, which changes where the samples come from).
struct RunOptions {
  std::vector<int> working_ports{55555};  // TCP ports the server listens on (0: any free port)
  std::string output;  // run directory (empty: runs/<timestamp>-<psgd>-<codec>-n<nodes>)
  int threads = 0;     // torch threads per worker (0: cores / processes on that host)
  // Microseconds a process keeps polling its sockets after its last event before it sleeps
  // (network/tcp/event_loop.h); 0: never (the default: on a shared machine polling slows a run).
  int busy_poll_us = 0;
  double join_timeout = 300;  // seconds the server waits for all workers to join and load data
  double io_timeout = 120;    // seconds any single wait for a peer may last
  // Write <run dir>/checkpoint.bin every this many iterations and at every epoch end (0: never);
  // init_server --resume continues from it. Strategies whose entry says checkpoints.
  std::int64_t checkpoint_every = 0;
  // Where a worker's samples come from: "never" (its own copy; a copy whose rows differ stops the
  // job), "auto" (its own copy when its rows match, else the server sends them), "always" (the
  // server sends them, skipped for a copy identical to the server's). The bare flag is "always".
  FlagChoice ship_data{"never", "always", "never"};
  bool ships_data() const { return !(ship_data == "never"); }
  // Keep model_epoch_<E>.pt per epoch and model_best.pt (lowest validation, else test, loss).
  bool save_every_epoch = false;
  // What a run does when a loss stops being a number (experiments/divergence.h): "stop" ends it
  // at once with status "diverged: ..."; "continue" trains on (and notes it in summary.json).
  // Not in job_config_hash: it changes nothing computed before the divergence, so a checkpoint
  // resumes under either.
  std::string on_divergence = "stop";

  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("working_ports", self.working_ports,
          "TCP port(s) to listen on; 0 picks a free port (see --port_file)");
    visit("output", self.output,
          "Run directory (default: runs/<timestamp>-<psgd>-<codec>-n<nodes>); one that holds "
          "any run, finished or not, is refused (continue an unfinished one with --resume)");
    visit("threads", self.threads,
          "Torch threads per worker (0: that host's cores / psgd processes on it, this server "
          "included)");
    visit("busy_poll_us", self.busy_poll_us,
          "Microseconds init_server and each client keep polling their sockets after their last "
          "message before they sleep, so that a reply is seen without a wake-up (tens of "
          "microseconds on a virtual machine, twice per parameter-server round trip). Each "
          "poller spends a core while it waits: use it only on machines with a core for every "
          "psgd process and nothing else running (e.g. 2000 for a one-worker benchmark); on a "
          "shared or busy machine it slows the run. 0 (the default): never. Results do not "
          "depend on it; polling pauses while init_server evaluates. Not with --simulate");
    visit("join_timeout", self.join_timeout,
          "Seconds to wait for all workers to join and load their data");
    visit("io_timeout", self.io_timeout,
          "Seconds any single wait for a peer may last before the peer counts as dead");
    visit("checkpoint_every", self.checkpoint_every,
          "Write <run dir>/checkpoint.bin every N iterations (ssgd: rounds, asgd: updates) and "
          "at every epoch end, with the server's state and every worker's own (momentum, "
          "error-feedback residuals, random streams), so that a crashed or interrupted server "
          "can be restarted with --resume (0: no checkpoints; every strategy, not with "
          "--simulate). Each write replaces the last one atomically");
    visit("ship_data", self.ship_data,
          "never|auto|always (the bare flag: always). Where a worker's training rows come from. "
          "never (the default): its own copy of the dataset; a worker whose rows differ from the "
          "server's stops the job naming it and its file. auto: its own copy when its rows match "
          "the server's, else (another file, order or version, or no readable file) the server "
          "sends it its rows and says so naming the worker and the file (summary.json "
          "shipped_workers). always: the server sends every worker its rows (compressed, "
          "chunked, checksummed), skipped for a worker whose whole copy is identical");
    visit("save_every_epoch", self.save_every_epoch,
          "Write the model evaluated at each epoch end as model_epoch_<E>.pt (with "
          "state_dict_epoch_<E>.pt), and model_best.pt (state_dict_best.pt) whenever its loss is "
          "the lowest so far: the validation loss with --validation_split, else the test loss "
          "(summary.json best_model says which epoch and loss), as Keras' "
          "ModelCheckpoint(save_best_only). Each file is written whole and read like model.pt "
          "(evaluate RUN_DIR --model_file model_best.pt; torch.load in Python)");
    visit("on_divergence", self.on_divergence,
          "stop|continue: what to do when training diverges, i.e. a round's training loss (the "
          "workers' mean batch loss) or the server's test or validation loss is NaN or "
          "infinite. stop (the default): end the run at once, saying where and what to try "
          "(a lower --learn_rate, --normalize zscore, a lower --momentum), with summary.json "
          "status \"diverged: ...\" and exit code 1; metrics.csv keeps the epochs recorded. "
          "continue: train every epoch regardless (to study divergence); summary.json "
          "divergence still says where it began");
  }
};

struct JobSpec : StrategyJob,
                 nn::DataOptions,
                 nn::PlacementOptions,
                 nn::ModelOptions,
                 DelayOptions,
                 RunOptions {
  // Throws ConfigError naming the offending flag(s) when the job cannot run: every component's
  // own checks, the strategy's and codec's rules (StrategyJob::validate) and the rules across
  // components below.
  void validate() const;
  // Accepted spellings to their canonical form (StrategyJob::canonicalize); one note per rewrite.
  std::vector<std::string> canonicalize() { return StrategyJob::canonicalize(); }
  // --local_data's refusals (the settings it cannot honour), one line each.
  void validate_local_data() const;

  // Every field in the order --help lists them: Parallel-SGD's public flags first.
  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    StrategyJob::fields(self, visit);
    nn::PlacementOptions::fields(self, visit);
    nn::ModelOptions::fields(self, visit);
    nn::DataOptions::fields(self, visit);
    DelayOptions::fields(self, visit);
    RunOptions::fields(self, visit);
  }
};

void to_json(nlohmann::json& j, const JobSpec& spec);
// Unknown keys are a ConfigError (a typo must not silently fall back to a default), as are values
// of the wrong type or out of their member's range.
void from_json(const nlohmann::json& j, JobSpec& spec);

// SHA-256 (hex) of the job's JSON without the fields that do not change what is computed (where
// it runs and is written, timeouts, threads, the checkpoint period): a checkpoint belongs to the
// job with the same hash. `model_sha256`, the content hash of --model script:FILE (JobPlan), is
// part of it: the same flags with another model file are another job.
std::string job_config_hash(const JobSpec& spec, const std::string& model_sha256 = "");

// What to say after a worker loss the job's strategy cannot survive (StrategyEntry::on_loss_hint),
// `workers_left` after it: the strategy's hint, or "" when the change it suggests would make a
// job that the whole job's checks refuse (a compression that cannot shrink, checkpoints with a
// shrinking ring, --overlap with --wait_for).
std::string loss_hint(const JobSpec& spec, int workers_left);

}  // namespace psgd
