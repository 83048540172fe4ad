#pragma once
// JobSpec: everything that defines a training job. The server builds it from flags and/or a JSON
// file, validates it once, records it in the run's config.json and sends it to every worker, so the
// server, the workers and the report all read the same values. JSON keys equal the flag names.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace psgd {

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

  // --- run management ---
  std::string output;         // run directory (empty: runs/<timestamp>-<psgd>-<codec>-n<nodes>)
  int threads = 0;            // torch threads per worker (0: cores / processes on that host)
  double join_timeout = 300;  // seconds the server waits for all workers to join and load data
  double io_timeout = 120;    // seconds any single wait for a peer may last

  // Throws ConfigError naming the offending flag(s) when the job cannot run.
  void validate() const;

  // A short name for logs and default run directories, e.g. "ssgd-plain-n4".
  std::string short_name() const;
};

void to_json(nlohmann::json& j, const JobSpec& spec);
// Unknown keys are a ConfigError (a typo must not silently fall back to a default).
void from_json(const nlohmann::json& j, JobSpec& spec);

// The strategies and codecs this build knows, for validation and help text.
const std::vector<std::string>& known_strategies();
const std::vector<std::string>& known_codecs();
const std::vector<std::string>& known_models();
const std::vector<std::string>& known_block_assignments();
const std::vector<std::string>& known_normalizers();
const std::vector<std::string>& known_targets();

}  // namespace psgd
