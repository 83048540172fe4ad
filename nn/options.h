#pragma once
// The data and model options of a job, as flags (core/fields.h). Torch-free: experiments/
// composes them into the JobSpec without compiling torch.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/data_source.h"

namespace psgd::nn {

struct DataOptions {
  std::string dataset = "fashion-mnist";
  std::string label_column;        // csv: label column name or 0-based index ("": the last)
  std::string normalize = "none";  // none | scale | minmax | zscore (statistics: training rows)
  std::string target = "xy";  // xy: classification; xx: reconstruction; regression: float targets
  std::string image_layout = "auto";  // npy / npz 4-D features: auto | nchw | nhwc
  double validation_split = 0.0;      // fraction of the training set held out for validation
  std::int64_t train_samples = 0;     // use only the first N training samples (0: all)
  std::int64_t test_samples = 0;      // evaluate on the first N test samples (0: all)
  // Federated-style: each worker trains on its own local file (the client's --dataset, or its
  // cluster-file host's); the server reads only its own test set (experiments/local_data.h).
  bool local_data = false;

  void validate() const;
  // How the readers take the data: label column(s), float targets, image layout.
  SourceOptions source_options() const {
    return {.label_column = label_column,
            .regression = target == "regression",
            .image_layout = image_layout};
  }

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("dataset", self.dataset,
          "fashion-mnist (Debian's dataset-fashion-mnist) | mnist:DIR | idx:DIR (a directory of "
          "the four IDX files, .gz or raw) | cifar10:DIR (binary batches) | csv:FILE | "
          "csv:X.csv,Y.csv | npy:X.npy,Y.npy | npz:FILE (x, y[, x_test, y_test]); without a "
          "test set every 5th sample is held out as one");
    visit("label_column", self.label_column,
          "csv:FILE: the label column, by header name or 0-based index (default: the last; "
          "none: no labels); --target regression: one or several target columns, "
          "comma-separated (e.g. y1,y2)");
    visit("normalize", self.normalize,
          "Feature normaliser, statistics from the training rows only: none | scale | minmax | "
          "zscore (none keeps values as read; 8-bit images are read as pixel/255)");
    visit("target", self.target,
          "xy: classify (cross-entropy, accuracy); xx: reconstruct the input (mean squared "
          "error; accuracy is n/a); regression: predict float targets (csv: the --label_column "
          "column(s); npy/npz: y of shape (N) or (N, T)) with mean squared error, reported as "
          "RMSE and R^2 instead of accuracy; targets are used as read (not normalised)");
    visit("image_layout", self.image_layout,
          "npy:/npz: 4-D feature arrays: nchw (N x C x H x W, PyTorch) | nhwc (N x H x W x C, "
          "Keras channels-last; converted to N x C x H x W when read) | auto (nhwc when the "
          "last dimension is 1, 3 or 4 and the second is not; init_server says what it "
          "decided)");
    visit("validation_split", self.validation_split,
          "Fraction of the training set held out (per seed) and evaluated every epoch");
    visit("train_samples", self.train_samples,
          "Use only the first N training samples (0: all); for quick experiments");
    visit("test_samples", self.test_samples, "Evaluate on the first N test samples (0: all)");
    visit("local_data", self.local_data,
          "Each worker trains on its OWN file (its client's --dataset, or the cluster file's "
          "dataset for its host), which the server never reads: before training each worker "
          "reports only its sample count, its label histogram and how many of its rows equal "
          "one of the server's test rows (salted hashes, never rows; a worker holding any is "
          "refused). The server evaluates on its own --dataset's test set. An epoch is "
          "ceil(sum of the workers' samples / (node_count x batch_size)) iterations (asgd, "
          "ssp: node_count times as many), each worker cycling through its own reshuffled "
          "rows; every batch counts alike in an average, whatever its worker's size. "
          "--train_samples applies to each worker's file. Not with --redundancy > 1, coded "
          "codecs (gc, ndc, ccdc), --ship_data auto|always, a --block_assignment other than "
          "iid, --normalize, --validation_split, --checkpoint_every / --resume, --simulate");
  }
};

// Which samples form each block; which workers hold each block is --redundancy's
// (core/cluster_options.h) and the coded schemes' (psgd/coding_table.h).
struct PlacementOptions {
  std::string block_assignment = "iid";  // iid | non-iid | contiguous
  double dirichlet_alpha = 0;            // non-iid: Dirichlet(alpha) label proportions per block
  int shards_per_node = 0;               // non-iid: label-sorted shards per block

  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("block_assignment", self.block_assignment,
          "How training samples are split into blocks: iid (shuffled with the seed) | non-iid "
          "(label-skewed: needs --dirichlet_alpha or --shards_per_node) | contiguous (Horovod's "
          "split: consecutive rows in file order, not shuffled; the first N % blocks blocks "
          "get one row more)");
    visit("dirichlet_alpha", self.dirichlet_alpha,
          "non-iid: per-class Dirichlet(alpha) proportions over blocks (0.1: few classes per "
          "worker; 100: nearly iid; 0: not used)");
    visit("shards_per_node", self.shards_per_node,
          "non-iid: deal label-sorted shards, S per block (per worker with --redundancy 1; 0: "
          "not used)");
  }
};

struct ModelOptions {
  // A built-in model (nn/models.cc) or script:FILE, a TorchScript module saved from Python.
  std::string model = "mlp";
  std::string device = "auto";  // auto | cpu (see validate())

  void validate() const;
  // The TorchScript file of --model script:FILE ("" for a built-in model).
  std::string script_path() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("model", self.model, model_help());
    visit("device", self.device,
          "auto | cpu: where the model trains. auto is the CPU: this version keeps parameters "
          "in host memory (flat parameter views shared with the codecs) and supports no GPU; "
          "--device cuda is refused");
  }
  static std::string model_help();
};

// The prefix of --model script:FILE.
inline constexpr const char* kScriptPrefix = "script:";

// The built-in models (nn/models.cc), for --help and validation.
struct ModelInfo {
  std::string name;
  std::string summary;
};
std::vector<ModelInfo> model_table();

}  // namespace psgd::nn
