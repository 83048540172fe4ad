#include "nn/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "nn/normalize.h"

namespace psgd::nn {

void DataOptions::validate() const {
  if (dataset.empty()) throw ConfigError("--dataset: give a dataset (default fashion-mnist)");
  const auto& norms = known_normalizers();
  if (std::find(norms.begin(), norms.end(), normalize) == norms.end()) {
    throw ConfigError(fmt::format("--normalize {}: unknown value; choose one of: {}", normalize,
                                  fmt::join(norms, ", ")));
  }
  if (target != "xy" && target != "xx" && target != "regression") {
    throw ConfigError(
        fmt::format("--target {}: unknown value; choose one of: xy, xx, regression", target));
  }
  if (target != "regression" && label_column.find(',') != std::string::npos) {
    throw ConfigError(
        fmt::format("--label_column {}: several columns are regression targets; they need --target "
                    "regression (a class label is one column)",
                    label_column));
  }
  if (target == "regression" && label_column == "none") {
    throw ConfigError("--label_column none with --target regression: name the target column(s)");
  }
  if (image_layout != "auto" && image_layout != "nchw" && image_layout != "nhwc") {
    throw ConfigError(fmt::format(
        "--image_layout {}: unknown value; choose one of: auto, nchw, nhwc", image_layout));
  }
  if (image_layout != "auto" && !dataset.starts_with("npy:") && !dataset.starts_with("npz:")) {
    throw ConfigError(fmt::format(
        "--image_layout {} with --dataset {}: the layout option is for npy:/npz: arrays (the "
        "other formats have one layout)",
        image_layout, dataset));
  }
  if (!(validation_split >= 0.0 && validation_split < 1.0)) {
    throw ConfigError(fmt::format("--validation_split {}: must be in [0, 1)", validation_split));
  }
  if (train_samples < 0 || test_samples < 0) {
    throw ConfigError("--train_samples / --test_samples: must not be negative (0 means all)");
  }
}

void PlacementOptions::validate() const {
  if (block_assignment != "iid" && block_assignment != "non-iid" &&
      block_assignment != "contiguous") {
    throw ConfigError(
        fmt::format("--block_assignment {}: unknown value; choose one of: iid, non-iid, contiguous",
                    block_assignment));
  }
  if (!(dirichlet_alpha >= 0) || !std::isfinite(dirichlet_alpha)) {
    throw ConfigError(fmt::format("--dirichlet_alpha {}: must be positive", dirichlet_alpha));
  }
  if (shards_per_node < 0) {
    throw ConfigError(fmt::format("--shards_per_node {}: must be positive", shards_per_node));
  }
  const bool skew = dirichlet_alpha > 0 || shards_per_node > 0;
  if (block_assignment == "non-iid") {
    if (dirichlet_alpha > 0 && shards_per_node > 0) {
      throw ConfigError(
          "--dirichlet_alpha and --shards_per_node are two kinds of non-iid split; give one");
    }
    if (!skew) {
      throw ConfigError(
          "--block_assignment non-iid needs --dirichlet_alpha A (label proportions) or "
          "--shards_per_node S (label-sorted shards)");
    }
  } else if (skew) {
    throw ConfigError(
        fmt::format("--{} applies to --block_assignment non-iid only, not --block_assignment {}",
                    dirichlet_alpha > 0 ? "dirichlet_alpha" : "shards_per_node", block_assignment));
  }
}

std::string ModelOptions::model_help() {
  std::string text = "Model:";
  for (const ModelInfo& m : model_table())
    text += fmt::format(" {} ({});", m.name, m.summary);
  text +=
      " or script:FILE.pt, your own network as a TorchScript module (in Python: "
      "torch.jit.script(model).save(FILE) or torch.jit.trace); the server sends the file to the "
      "workers with the job. Its forward() takes a batch N x C x H x W (tabular data: N x 1 x 1 x "
      "F) and returns N x classes (--target xx: N x C*H*W; --target regression: N x targets).";
  return text;
}

std::string ModelOptions::script_path() const {
  return model.starts_with(kScriptPrefix) ? model.substr(std::string(kScriptPrefix).size()) : "";
}

void ModelOptions::validate() const {
  std::vector<std::string> names;
  for (const ModelInfo& m : model_table())
    names.push_back(m.name);
  if (model.starts_with(kScriptPrefix)) {
    if (script_path().empty()) {
      throw ConfigError("--model script:FILE: give the TorchScript file after 'script:'");
    }
  } else if (std::find(names.begin(), names.end(), model) == names.end()) {
    throw ConfigError(fmt::format(
        "--model {}: unknown value; choose one of: {}, or script:FILE.pt (a TorchScript module)",
        model, fmt::join(names, ", ")));
  }
  if (device == "cuda") {
    throw ConfigError(
        "--device cuda: not supported by this version of psgd (parameters live in host memory, "
        "shared with the codecs as flat views); use --device cpu or auto, which is the CPU");
  }
  if (device != "auto" && device != "cpu") {
    throw ConfigError(fmt::format("--device {}: unknown value; choose one of: auto, cpu", device));
  }
}

}  // namespace psgd::nn
