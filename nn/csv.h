#pragma once
// Reader for numeric CSV files: one sample per line, comma-separated, '.' as decimal point.
//
// The first line is a header when none of its cells is a number; header names then identify the
// label column. Blank lines are skipped. Every other cell must be a finite number; the first one
// that is not gives an error naming the file, the line and the column (with its header name).
// Features become a 1 x 1 x F Dataset (values as written; see nn/normalize.h for scaling).
#include <cstdint>
#include <string>

#include "nn/dataset.h"

namespace psgd::nn {

struct CsvOptions {
  // Which column holds the label: "" (the last one), a header name, a 0-based index, or "none"
  // (every column is a feature and every label is 0, for reconstruction targets).
  // With `regression`, one or several comma-separated columns ("y1,y2"; default the last one)
  // whose values are float targets, in that order.
  std::string label_column;
  bool regression = false;  // float targets (Dataset::targets) instead of class labels
};

// One file with features and a label column. Labels must be integers in [0, 65535]; regression
// targets any finite numbers.
Dataset read_csv(const std::string& path, const CsvOptions& options = {});

// Features from x_path (every column) and labels from y_path (exactly one column; regression:
// every column is a target); the two must have the same number of rows.
Dataset read_csv_pair(const std::string& x_path, const std::string& y_path,
                      const CsvOptions& options = {});

}  // namespace psgd::nn
