#pragma once
// JobSpec: everything that defines a training job. The server builds it from flags and/or a JSON
// file, validates it once, records it in the run's config.json and sends it to every worker, so the
// server, the workers and the report all read the same values. JSON keys equal the flag names.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace psgd {

// --model_average auto's decay for asgd and ssp (ema:0.99; core/model_average.h).
inline constexpr double kAsyncModelAverageDecay = 0.99;

struct JobSpec {
  // --- the public contract of init_server (sweep scripts use these names) ---
  int node_count = 4;                     // number of worker processes (clients)
  int batch_size = 128;                   // samples per worker per iteration
  int redundancy = 1;                     // each data block is held by this many workers
  std::string codec = "plain";            // gradient codec, worker -> server
  std::string psgd = "ssgd";              // synchronisation strategy
  double learn_rate = 0.05;               // SGD learning rate
  int epochs = 5;                         // passes over the training set
  std::vector<int> working_ports{55555};  // TCP ports the server listens on (0: any free port)
  std::string block_assignment = "iid";   // how samples are split into blocks

  // --- model, data, optimiser ---
  std::string model = "mlp";              // mlp | cnn | resnet8 | autoencoder
  std::string dataset = "fashion-mnist";  // fashion-mnist | mnist:DIR | idx:DIR | cifar10:DIR |
                                          // csv:.. | npy:.. | npz:FILE
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = false;
  std::int64_t train_samples = 0;  // use only the first N training samples (0: all)
  std::int64_t test_samples = 0;   // evaluate on the first N test samples (0: all)
  std::uint64_t seed = 1;          // model init, data placement, batch order
  std::string device = "auto";     // auto | cpu | cuda (workers and server evaluation)
  std::string normalize = "none";  // none | scale | minmax | zscore (statistics: training set)
  std::string target = "xy";       // xy: classification; xx: reconstruction (MSE)
  double validation_split = 0.0;   // fraction of the training set held out for validation
  std::string label_column;        // csv: label column name or 0-based index ("": the last)
  bool ship_data = false;          // the server sends each worker its samples

  // --- codec options (codecs/factory.h) ---
  int codec_levels = 8;                 // qsgd: quantisation levels s (1..32767)
  double codec_ratio = 0.01;            // topk / randk: fraction of coordinates kept, in (0, 1]
  std::int64_t codec_bucket = -1;       // qsgd, sign: elements per norm / scale (0: whole vector,
                                        // -1: the codec's default, qsgd 512, sign 0)
  std::string error_feedback = "auto";  // auto (on for sign, topk, randk) | on | off
  // topk: selection per tensor ("tensor", DGC) or over the whole flat gradient ("global"), and
  // DGC's sparsity warm-up: the kept fraction decays exponentially from codec_warmup_ratio to
  // codec_ratio over the first codec_warmup_epochs epochs (0: none). codecs/topk.h.
  std::string codec_scope = "global";
  double codec_warmup_epochs = 0;
  double codec_warmup_ratio = 0.25;
  std::string server_codec = "plain";  // parameters, server -> worker: plain | fp16 | bf16
  // Where --momentum is applied: server (the server's SGD) | worker (momentum correction before
  // compression, server SGD without momentum) | auto (worker for asgd and ssp, and when error
  // feedback is on with a gradient-pushing strategy; server otherwise); codecs/factory.h
  // momentum_at_worker().
  std::string momentum_at = "auto";

  // --- run management ---
  std::string output;         // run directory (empty: runs/<timestamp>-<psgd>-<codec>-n<nodes>)
  int threads = 0;            // torch threads per worker (0: cores / processes on that host)
  double join_timeout = 300;  // seconds the server waits for all workers to join and load data
  double io_timeout = 120;    // seconds any single wait for a peer may last
  // Write <run dir>/checkpoint.bin every this many iterations and at every epoch end (0: never);
  // init_server --resume continues from it. ssgd only (psgd/checkpoint.h).
  std::int64_t checkpoint_every = 0;

  // --- strategies, stragglers, data skew (0 / -1 / "none": not given) ---
  int wait_for = 0;           // ssgd: close each round with the first k gradients (0: all)
  int staleness = -1;         // ssp: clocks a worker may run ahead of the slowest (-1: 2)
  bool staleness_lr = false;  // asgd, ssp: weight 1/max(n, staleness + 1), not 1/n
  // asgd: DC-ASGD's lambda (psgd/delay_compensation.h); 0: off
  double delay_compensation = 0;
  std::string delay_compensation_mode = "adaptive";  // adaptive (DC-ASGD-a) | constant (-c)
  int sync_period = 0;         // local_sgd: local steps between model averages (0: 4)
  int local_after_epochs = 0;  // local_sgd: epochs of ssgd-equivalent H = 1 first
  std::string delay = "none";  // per-iteration delay on every worker: fixed:S | exp:MEAN | ...
  double dirichlet_alpha = 0;  // non-iid: Dirichlet(alpha) label proportions per block
  int shards_per_node = 0;     // non-iid: label-sorted shards per block
  std::string allreduce_backend = "ring";  // allreduce: ring (ours, peer TCP links) | gloo (c10d)
  // The model evaluated and saved: off (the last iterate) | ema:BETA (an exponential average of
  // the server's parameters, core/model_average.h) | auto (ema:0.99 for asgd and ssp, off
  // otherwise).
  std::string model_average = "auto";

  // Effective values of the options above for the strategy in use.
  int ssp_staleness() const { return staleness < 0 ? 2 : staleness; }
  int local_sync_period() const { return sync_period > 0 ? sync_period : 4; }
  // --model_average's decay for this strategy: 0 for off (the last iterate is evaluated).
  double model_average_decay() const;

  // Throws ConfigError naming the offending flag(s) when the job cannot run.
  void validate() const;
  void validate_strategy_options() const;  // the part of validate() for the options above
  void validate_gradient_coding() const;   // the part for --codec gc / ndc
  void validate_ccdc() const;              // the part for --codec ccdc

  // A short name for logs and default run directories, e.g. "ssgd-plain-n4".
  std::string short_name() const;
};

void to_json(nlohmann::json& j, const JobSpec& spec);
// Unknown keys are a ConfigError (a typo must not silently fall back to a default).
void from_json(const nlohmann::json& j, JobSpec& spec);

// The strategies and codecs this build knows, for validation and help text.
const std::vector<std::string>& known_strategies();
const std::vector<std::string>& known_codecs();
// Codecs the parameters may travel in (the worker replaces its model with what it decodes, so
// only the dense casts make sense).
const std::vector<std::string>& known_server_codecs();
const std::vector<std::string>& known_models();
const std::vector<std::string>& known_block_assignments();
const std::vector<std::string>& known_normalizers();
const std::vector<std::string>& known_targets();

}  // namespace psgd
