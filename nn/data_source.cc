#include "nn/data_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cifar.h"
#include "nn/csv.h"
#include "nn/idx.h"
#include "nn/npy.h"

namespace psgd::nn {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
constexpr std::int64_t kTestEvery = 5;  // single-set sources: every 5th sample is a test sample

// DIR/NAME.gz if present, else DIR/NAME; a ConfigError naming both when neither exists.
std::string find_idx_file(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  for (const fs::path& candidate : {dir / (name + ".gz"), dir / name}) {
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  throw ConfigError(
      fmt::format("dataset directory {} has neither {} nor {}.gz", dir.string(), name, name));
}

DataSplit load_idx_dir(const fs::path& dir, std::int64_t train_limit, std::int64_t test_limit) {
  // Look every file up first (in this order) so a missing one is reported before any reading.
  const std::string train_images = find_idx_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_idx_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_idx_file(dir, "t10k-labels-idx1-ubyte");
  DataSplit split;
  split.train = read_idx(train_images, train_labels, train_limit);
  split.test = read_idx(test_images, test_labels, test_limit);
  return split;
}

// "a,b" -> {"0": a, "1": b}; "x=a,y=b" -> {"x": a, "y": b}.
std::map<std::string, std::string> parse_files(const std::string& spec, const std::string& rest) {
  std::map<std::string, std::string> files;
  std::size_t start = 0, position = 0;
  while (start <= rest.size()) {
    const std::size_t comma = rest.find(',', start);
    const std::string part =
        rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.empty()) throw ConfigError(fmt::format("dataset {}: empty file name", spec));
    const std::size_t eq = part.find('=');
    const std::string key =
        eq == std::string::npos ? std::to_string(position++) : part.substr(0, eq);
    if (!files.emplace(key, eq == std::string::npos ? part : part.substr(eq + 1)).second) {
      throw ConfigError(fmt::format("dataset {}: '{}' given twice", spec, key));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return files;
}

std::string take(std::map<std::string, std::string>& files, const std::string& key) {
  auto it = files.find(key);
  if (it == files.end()) return {};
  std::string v = it->second;
  files.erase(it);
  return v;
}

// A regular file; CSV files may also be named pipes (a FIFO, or `<(zcat x.csv.gz)` from the
// shell), read once, in order.
void require_file(const std::string& spec, const std::string& path, bool pipe_ok = false) {
  std::error_code ec;
  if (pipe_ok && fs::is_fifo(path, ec)) return;
  if (!fs::exists(path, ec)) {
    throw ConfigError(fmt::format("dataset {}: file '{}' does not exist", spec, path));
  }
  if (!fs::is_regular_file(path, ec)) {
    throw ConfigError(fmt::format("dataset {}: '{}' is not a regular file", spec, path));
  }
}

void no_leftovers(const std::string& spec, const std::map<std::string, std::string>& files,
                  const char* expected) {
  if (!files.empty()) {
    throw ConfigError(fmt::format("dataset {}: unexpected '{}' (expected {})", spec,
                                  files.begin()->second, expected));
  }
}

DataSplit load_csv(const std::string& spec, const std::string& rest, const SourceOptions& o) {
  auto files = parse_files(spec, rest);
  std::string train = take(files, "train"), test = take(files, "test");
  std::string x = take(files, "x"), y = take(files, "y");
  std::string tx = take(files, "test_x"), ty = take(files, "test_y");
  const std::string p0 = take(files, "0"), p1 = take(files, "1");
  if (!p0.empty() && p1.empty()) train = p0;
  if (!p1.empty()) x = p0, y = p1;
  no_leftovers(spec, files, "csv:FILE, csv:X,Y or keys train=, test=, x=, y=, test_x=, test_y=");
  if (train.empty() == x.empty() || x.empty() != y.empty() || tx.empty() != ty.empty() ||
      (!test.empty() && !tx.empty())) {
    throw ConfigError(fmt::format(
        "dataset {}: give one training set (FILE, or X,Y) and at most one test set", spec));
  }
  for (const auto& f : {train, test, x, y, tx, ty})
    if (!f.empty()) require_file(spec, f, /*pipe_ok=*/true);
  const CsvOptions csv{.label_column = o.label_column, .regression = o.regression};
  DataSplit split;
  split.train = train.empty() ? read_csv_pair(x, y, csv) : read_csv(train, csv);
  if (!test.empty()) split.test = read_csv(test, csv);
  if (!tx.empty()) split.test = read_csv_pair(tx, ty, csv);
  return split;
}

ArrayOptions array_options(const SourceOptions& o) {
  return {.regression = o.regression, .layout = o.image_layout};
}

DataSplit load_npy(const std::string& spec, const std::string& rest, const SourceOptions& o) {
  auto files = parse_files(spec, rest);
  std::string x = take(files, "x"), y = take(files, "y");
  std::string tx = take(files, "test_x"), ty = take(files, "test_y");
  if (auto p0 = take(files, "0"); !p0.empty()) x = p0;
  if (auto p1 = take(files, "1"); !p1.empty()) y = p1;
  no_leftovers(spec, files, "npy:X,Y or keys x=, y=, test_x=, test_y=");
  if (x.empty() || y.empty() || tx.empty() != ty.empty()) {
    throw ConfigError(
        fmt::format("dataset {}: give X and Y (.npy), and optionally test_x= and "
                    "test_y=",
                    spec));
  }
  for (const auto& f : {x, y, tx, ty})
    if (!f.empty()) require_file(spec, f);
  DataSplit split;
  split.train = dataset_from_arrays(read_npy(x), read_npy(y), x, y, array_options(o), &split.notes);
  if (!tx.empty())
    split.test = dataset_from_arrays(read_npy(tx), read_npy(ty), tx, ty, array_options(o));
  return split;
}

DataSplit load_npz(const std::string& spec, const std::string& path, const SourceOptions& o) {
  require_file(spec, path);
  auto members = read_npz(path);
  auto pick = [&](std::initializer_list<const char*> names) -> const NpyArray* {
    for (const char* n : names) {
      if (auto it = members.find(n); it != members.end()) return &it->second;
    }
    return nullptr;
  };
  const NpyArray* x = pick({"x", "x_train"});
  const NpyArray* y = pick({"y", "y_train"});
  const NpyArray* tx = pick({"x_test"});
  const NpyArray* ty = pick({"y_test"});
  if (!x || !y || (tx == nullptr) != (ty == nullptr)) {
    std::string names;
    for (const auto& [k, v] : members)
      names += (names.empty() ? "" : ", ") + k;
    throw ConfigError(fmt::format(
        "{}: expected arrays x and y (or x_train, y_train), optionally x_test and y_test; it "
        "holds: {}",
        path, names.empty() ? "nothing" : names));
  }
  DataSplit split;
  split.train =
      dataset_from_arrays(*x, *y, path + ":x", path + ":y", array_options(o), &split.notes);
  if (tx) {
    split.test =
        dataset_from_arrays(*tx, *ty, path + ":x_test", path + ":y_test", array_options(o));
  }
  return split;
}

void truncate(Dataset& d, std::int64_t limit) {
  if (limit <= 0 || static_cast<std::int64_t>(d.size()) <= limit) return;
  d.labels.resize(static_cast<std::size_t>(limit));
  d.images.resize(static_cast<std::size_t>(limit * d.sample_numel()));
  d.targets.resize(static_cast<std::size_t>(limit * d.target_dims));
}

// Labels are class indices 0..K-1, K the largest label + 1 (the model gets K outputs). Classes
// without a single sample are said in a note. When most classes are empty although there are
// samples enough to fill them (10 per class), the labels are not class indices (a stray 255 in
// 10-class data, a column of measurements) and the data are refused (unless `refuse_sparse` is
// false: a --local_data worker's own file); CIFAR-10 has its 10 classes by format. Counted over
// everything read, before --train_samples / --test_samples keep a part.
void check_classes(DataSplit& split, const std::string& label, bool refuse_sparse) {
  const int classes = std::max(split.train.num_classes, split.test.num_classes);
  if (classes <= 0) return;
  std::vector<std::int64_t> count(static_cast<std::size_t>(classes), 0);
  for (const Dataset* d : {&split.train, &split.test})
    for (std::int64_t l : d->labels)
      if (l >= 0 && l < classes) ++count[static_cast<std::size_t>(l)];
  std::vector<int> empty;
  for (int c = 0; c < classes; ++c)
    if (count[static_cast<std::size_t>(c)] == 0) empty.push_back(c);
  if (empty.empty()) return;
  const int used = classes - static_cast<int>(empty.size());
  std::string which;
  for (std::size_t i = 0; i < empty.size() && i < 5; ++i)
    which += fmt::format("{}{}", i ? ", " : "", empty[i]);
  if (empty.size() > 5) which += fmt::format(", ... ({} in all)", empty.size());
  const auto samples = static_cast<std::int64_t>(split.train.size() + split.test.size());
  if (refuse_sparse && label != "cifar10" && static_cast<int>(empty.size()) > used &&
      samples >= std::int64_t{10} * classes) {
    throw ConfigError(fmt::format(
        "dataset {}: labels go up to {}, so the model would have {} classes, but only {} of them "
        "have samples (none for {}); labels must be class indices 0..K-1: check the label "
        "column (--label_column) and values such as {} that do not belong",
        label, classes - 1, classes, used, which, classes - 1));
  }
  split.notes.push_back(fmt::format(
      "dataset {}: {} of the {} classes 0..{} have no sample ({}); the model still has {} "
      "outputs (labels are class indices 0..K-1)",
      label, empty.size(), classes, classes - 1, which, classes));
}

// Shapes, class counts, names and the held-out test set of a freshly read split.
DataSplit finish(DataSplit split, const std::string& label, std::int64_t train_limit,
                 std::int64_t test_limit, const SourceOptions& options) {
  const bool hold_out_test = options.hold_out_test;
  if (split.train.size() == 0)
    throw ConfigError(fmt::format("dataset {}: no training samples", label));
  check_classes(split, label, options.refuse_sparse_labels);
  if (split.test.size() == 0 && !hold_out_test) {
    // No test set and none wanted: an empty one of the training set's shape.
    split.test.channels = split.train.channels;
    split.test.height = split.train.height;
    split.test.width = split.train.width;
    split.test.target_dims = split.train.target_dims;
  } else if (split.test.size() == 0) {
    std::vector<std::int64_t> train, test;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(split.train.size()); ++i) {
      (i % kTestEvery == kTestEvery - 1 ? test : train).push_back(i);
    }
    if (test.empty()) {
      throw ConfigError(fmt::format(
          "dataset {}: {} samples and no test set; at least {} are needed to hold out every {}th",
          label, split.train.size(), kTestEvery, kTestEvery));
    }
    Dataset all = std::move(split.train);
    split.train = subset(all, train, "");
    split.test = subset(all, test, "");
  }
  truncate(split.train, train_limit);
  truncate(split.test, test_limit);
  const Dataset &a = split.train, &b = split.test;
  if (a.channels != b.channels || a.height != b.height || a.width != b.width) {
    throw ConfigError(
        fmt::format("dataset {}: training samples are {}x{}x{} but test samples {}x{}x{}", label,
                    a.channels, a.height, a.width, b.channels, b.height, b.width));
  }
  if (a.target_dims != b.target_dims) {
    throw ConfigError(
        fmt::format("dataset {}: training samples have {} targets but test samples {}", label,
                    a.target_dims, b.target_dims));
  }
  for (const Dataset* d : {&a, &b}) {
    for (float v : d->images) {
      if (!std::isfinite(v)) {
        throw ConfigError(fmt::format("dataset {}: a feature value is not finite ({})", label, v));
      }
    }
  }
  const int classes = std::max(split.train.num_classes, split.test.num_classes);
  split.train.num_classes = split.test.num_classes = classes;
  split.train.name = label + " train";
  split.test.name = label + " test";
  return split;
}

}  // namespace

DataSplit load_dataset(const std::string& spec, std::int64_t train_limit, std::int64_t test_limit,
                       const SourceOptions& options) {
  std::error_code ec;
  const std::string kind_of_spec = spec.substr(0, spec.find(':'));
  if (options.regression && kind_of_spec != "csv" && kind_of_spec != "npy" &&
      kind_of_spec != "npz") {
    throw ConfigError(fmt::format(
        "--target regression with --dataset {}: its labels are classes; float targets come from "
        "csv:, npy: or npz: data",
        spec));
  }
  if (spec == "fashion-mnist") {
    const char* env = std::getenv("PSGD_FASHION_MNIST_DIR");
    const fs::path dir = env != nullptr && *env != '\0' ? env : kFashionMnistDir;
    if (!fs::is_directory(dir, ec)) {
      throw ConfigError(fmt::format(
          "Fashion-MNIST not found in {}: install Debian's dataset-fashion-mnist package "
          "(scripts/setup.sh does), set PSGD_FASHION_MNIST_DIR, or use --dataset mnist:DIR",
          dir.string()));
    }
    return finish(load_idx_dir(dir, train_limit, test_limit), "fashion-mnist", 0, 0, options);
  }
  const std::size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (colon != std::string::npos && rest.empty()) {
    throw ConfigError(fmt::format("dataset {}: nothing after '{}:'", spec, kind));
  }
  if (colon != std::string::npos && (kind == "mnist" || kind == "idx" || kind == "cifar10")) {
    const fs::path dir = rest;
    if (!fs::is_directory(dir, ec)) {
      throw ConfigError(fmt::format("dataset {}: directory '{}' does not exist", spec, rest));
    }
    if (kind == "cifar10")
      return finish(read_cifar10_dir(rest, train_limit, test_limit), kind, 0, 0, options);
    return finish(load_idx_dir(dir, train_limit, test_limit), kind, 0, 0, options);
  }
  if (colon != std::string::npos && kind == "csv") {
    return finish(load_csv(spec, rest, options), kind, train_limit, test_limit, options);
  }
  if (colon != std::string::npos && kind == "npy") {
    return finish(load_npy(spec, rest, options), kind, train_limit, test_limit, options);
  }
  if (colon != std::string::npos && kind == "npz") {
    return finish(load_npz(spec, rest, options), kind, train_limit, test_limit, options);
  }
  throw ConfigError(fmt::format(
      "unknown dataset '{}': expected fashion-mnist, mnist:DIR, idx:DIR (MNIST-format IDX files), "
      "cifar10:DIR, csv:FILE, csv:X,Y, npy:X,Y or npz:FILE",
      spec));
}

std::string describe(const Dataset& d) {
  if (d.target_dims > 0) {
    return fmt::format("{}: {} samples of {}x{}x{}, {} regression target{}",
                       d.name.empty() ? "dataset" : d.name, d.size(), d.channels, d.height, d.width,
                       d.target_dims, d.target_dims == 1 ? "" : "s");
  }
  return fmt::format("{}: {} samples of {}x{}x{}, {} classes", d.name.empty() ? "dataset" : d.name,
                     d.size(), d.channels, d.height, d.width, d.num_classes);
}

Dataset subset(const Dataset& d, std::span<const std::int64_t> rows, std::string name) {
  Dataset out;
  out.channels = d.channels;
  out.height = d.height;
  out.width = d.width;
  out.num_classes = d.num_classes;
  out.target_dims = d.target_dims;
  out.name = std::move(name);
  const auto t = static_cast<std::size_t>(d.target_dims);
  out.targets.resize(rows.size() * t);
  const auto f = static_cast<std::size_t>(d.sample_numel());
  out.images.resize(rows.size() * f);
  out.labels.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto r = rows[i];
    if (r < 0 || static_cast<std::size_t>(r) >= d.size()) {
      throw ConfigError(fmt::format("sample {} outside {} ({} samples)", r, d.name, d.size()));
    }
    std::memcpy(out.images.data() + i * f, d.images.data() + static_cast<std::size_t>(r) * f,
                f * sizeof(float));
    out.labels[i] = d.labels[static_cast<std::size_t>(r)];
    if (t > 0) {
      std::memcpy(out.targets.data() + i * t, d.targets.data() + static_cast<std::size_t>(r) * t,
                  t * sizeof(float));
    }
  }
  return out;
}

HoldOut hold_out(std::int64_t n, double fraction, std::uint64_t seed) {
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    throw ConfigError(fmt::format("--validation_split {}: must be in [0, 1)", fraction));
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  const auto k = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
  HoldOut h;
  if (k == 0) {
    h.train = std::move(order);
    return h;
  }
  if (k >= order.size()) {
    throw ConfigError(
        fmt::format("--validation_split {} leaves no training samples of {}", fraction, n));
  }
  Rng rng(derive_seed(seed, 0x76616c));  // "val"
  shuffle(std::span<std::int64_t>(order), rng);
  h.validation.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
  h.train.assign(order.begin() + static_cast<std::ptrdiff_t>(k), order.end());
  std::sort(h.validation.begin(), h.validation.end());
  std::sort(h.train.begin(), h.train.end());
  return h;
}

}  // namespace psgd::nn
