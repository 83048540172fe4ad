#include "experiments/local_data.h"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "core/error.h"
#include "network/auth.h"
#include "nn/data_source.h"
#include "nn/partition.h"

namespace psgd {

std::vector<std::uint64_t> salted_row_hashes(const nn::Dataset& d, const std::string& salt) {
  const auto numel = static_cast<std::size_t>(d.sample_numel());
  std::vector<std::uint64_t> hashes(d.size());
  std::vector<std::uint8_t> buffer(salt.size() + numel * sizeof(std::int64_t));
  std::memcpy(buffer.data(), salt.data(), salt.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    std::uint8_t* out = buffer.data() + salt.size();
    for (std::size_t k = 0; k < numel; ++k) {
      const double v = d.images[i * numel + k];
      const std::int64_t q = std::isfinite(v) ? std::llround(v * 1e4) : 0;
      std::memcpy(out + k * sizeof(q), &q, sizeof(q));
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(buffer.data(), buffer.size(), digest);
    std::uint64_t h = 0;
    for (int b = 0; b < 8; ++b)
      h = (h << 8) | digest[b];
    hashes[i] = h;
  }
  return hashes;
}

std::int64_t count_test_rows(const nn::Dataset& own, const std::string& salt,
                             const std::vector<std::uint64_t>& test_hashes) {
  if (test_hashes.empty()) return 0;
  const std::unordered_set<std::uint64_t> test(test_hashes.begin(), test_hashes.end());
  std::int64_t found = 0;
  for (std::uint64_t h : salted_row_hashes(own, salt))
    found += test.count(h) ? 1 : 0;
  return found;
}

std::string make_salt() {
  std::string hex;
  for (std::uint8_t b : net::make_nonce())
    hex += fmt::format("{:02x}", b);
  return hex;
}

LocalFile read_local_file(const JobSpec& spec, const Job& job, const std::string& dataset) {
  nn::SourceOptions options = spec.source_options();
  options.hold_out_test = false;
  // A label-skewed site holds a few of the model's classes (7-9 of 10): the server checks the
  // labels against its model's classes (local_data_refusal), the reader only notes the empty ones.
  options.refuse_sparse_labels = false;
  nn::DataSplit split;
  try {
    split = nn::load_dataset(dataset, spec.train_samples, 1, options);
  } catch (const ConfigError& e) {
    throw ConfigError(
        fmt::format("--local_data: cannot read this worker's own file {}: {}", dataset, e.what()));
  }
  LocalFile file{.train = std::move(split.train)};
  const nn::Dataset& d = file.train;
  std::vector<std::int64_t> all(d.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i] = static_cast<std::int64_t>(i);
  file.report = LocalData{.samples = static_cast<std::int64_t>(d.size()),
                          .label_histogram = nn::label_histogram(d.labels, all, d.num_classes),
                          .shape = {d.channels, d.height, d.width, d.target_dims},
                          .test_rows = count_test_rows(d, job.test_salt, job.test_hashes),
                          .dataset = dataset};
  return file;
}

namespace {

std::int64_t features(const std::vector<std::int64_t>& s) {
  return s.size() == 4 ? s[0] * s[1] * s[2] : -1;
}

}  // namespace

std::string shape_text(const std::vector<std::int64_t>& s) {
  if (s.size() != 4 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0 || s[3] < 0) return "malformed";
  return fmt::format("{}x{}x{} ({} features{})", s[0], s[1], s[2], s[0] * s[1] * s[2],
                     s[3] > 0 ? fmt::format(", {} targets", s[3]) : "");
}

std::vector<std::int64_t> model_shape(const nn::Dataset& d) {
  return {d.channels, d.height, d.width, d.target_dims};
}

std::string local_data_refusal(const LocalData& r, const nn::Dataset& server, int w,
                               const std::string& where) {
  const std::string who = fmt::format("worker {} ({})", w, where);
  if (r.samples <= 0) {
    return fmt::format("{}: its own file {} holds no training rows", who, r.dataset);
  }
  // Another layout of as many features (a CSV's flat 1x1x784 rows beside an image server's
  // 1x28x28) is taken: the worker reshapes its rows to the model's shape (take_model_shape).
  const std::vector<std::int64_t> expected = model_shape(server);
  if (shape_text(r.shape) == "malformed" || features(r.shape) != features(expected) ||
      r.shape[3] != expected[3]) {
    return fmt::format(
        "{}: its own file {} holds samples of {}, but the job's model takes {} (the server's "
        "--dataset); give every worker a file with as many features per sample",
        who, r.dataset, shape_text(r.shape), shape_text(expected));
  }
  std::int64_t counted = 0;
  for (std::int64_t c : r.label_histogram) {
    if (c < 0) return fmt::format("{}: a malformed label histogram", who);
    counted += c;
  }
  if (counted != r.samples) {
    return fmt::format("{}: its label histogram counts {} samples but it reports {}", who, counted,
                       r.samples);
  }
  if (server.target_dims == 0 &&
      static_cast<std::int64_t>(r.label_histogram.size()) > server.num_classes) {
    return fmt::format(
        "{}: its own file {} has labels up to {}, but the job's model has {} classes (0..{}, from "
        "the server's --dataset)",
        who, r.dataset, r.label_histogram.size() - 1, server.num_classes, server.num_classes - 1);
  }
  if (r.test_rows > 0) {
    return fmt::format(
        "{}: its own file {} holds {} of the server's test rows (equal features); remove them "
        "from the file, or the test accuracy measures rows it trained on",
        who, r.dataset, r.test_rows);
  }
  return {};
}

std::string classes_present(const std::vector<std::int64_t>& histogram) {
  std::vector<std::string> runs;
  const auto n = static_cast<int>(histogram.size());
  for (int c = 0; c < n;) {
    if (histogram[static_cast<std::size_t>(c)] <= 0) {
      ++c;
      continue;
    }
    int end = c;
    while (end + 1 < n && histogram[static_cast<std::size_t>(end + 1)] > 0)
      ++end;
    runs.push_back(end == c ? fmt::format("{}", c) : fmt::format("{}-{}", c, end));
    c = end + 1;
  }
  if (runs.empty()) return "no class";
  std::string joined;
  for (std::size_t i = 0; i < runs.size(); ++i)
    joined += (i ? ", " : "") + runs[i];
  return (runs.size() == 1 && runs[0].find('-') == std::string::npos ? "class " : "classes ") +
         joined;
}

std::string take_model_shape(nn::Dataset& d, const std::vector<std::int64_t>& shape) {
  const std::vector<std::int64_t> own = model_shape(d);
  if (own == shape) return {};
  if (shape_text(shape) == "malformed" || features(own) != features(shape) || own[3] != shape[3]) {
    return fmt::format("its rows of {} cannot take the model's shape {}", shape_text(own),
                       shape_text(shape));
  }
  d.channels = shape[0];
  d.height = shape[1];
  d.width = shape[2];
  return {};
}

nlohmann::json local_data_json(int w, const std::string& host, const LocalData& r) {
  return {{"worker", w},
          {"host", host},
          {"dataset", r.dataset},
          {"samples", r.samples},
          {"label_histogram", r.label_histogram},
          {"test_rows", r.test_rows}};
}

}  // namespace psgd
