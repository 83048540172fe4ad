#pragma once
// Feature normalisers (--normalize). Statistics come from the training rows only and the same
// transform is then applied to the training, validation and test sets, on the server and on
// every worker (the server sends them in the Job, so workers never recompute them).
//
//   none    values as the source read them (8-bit image sources are already pixel / 255)
//   scale   x / max|x| over the training set (one factor for every feature)
//   minmax  per feature: (x - min) / (max - min); a constant feature becomes 0
//   zscore  per feature: (x - mean) / std (population std); a constant feature becomes 0
//
// Every normaliser is stored as x' = (x - shift[f]) * scale[f] with one pair per feature, so
// applying it needs no knowledge of the kind.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace psgd::nn {

struct Normalizer {
  std::string kind = "none";
  std::vector<float> shift;  // per feature; empty for "none"
  std::vector<float> scale;  // per feature; empty for "none"

  // Throws ConfigError when the statistics do not fit the dataset's sample size.
  void apply(Dataset& d) const;
};

const std::vector<std::string>& known_normalizers();

// Statistics of `kind` over the rows `rows` of `train` (all rows when `rows` is empty).
Normalizer fit_normalizer(const std::string& kind, const Dataset& train,
                          std::span<const std::int64_t> rows = {});

}  // namespace psgd::nn
