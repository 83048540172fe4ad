#include "nn/csv.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include "core/error.h"

namespace psgd::nn {
namespace {

constexpr double kMaxLabel = 65535;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> cells;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    cells.push_back(
        trim(line.substr(start, comma == std::string_view::npos ? comma : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return cells;
}

std::optional<double> parse_number(std::string_view cell) {
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  double v = 0;
  const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || end != cell.data() + cell.size() || cell.empty() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

// The numeric rows of a CSV file and its header (empty when the file has none).
struct Table {
  std::string path;
  std::vector<std::string> header;
  std::vector<double> values;  // row-major
  std::vector<std::size_t> line_of_row;
  std::size_t columns = 0;
  std::size_t rows() const { return line_of_row.size(); }

  std::string column_name(std::size_t c) const {
    return header.empty() ? fmt::format("column {}", c + 1)
                          : fmt::format("column {} ('{}')", c + 1, header[c]);
  }
};

Table read_table(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot open CSV file {}", path));
  Table t;
  t.path = path;
  std::string line;
  std::size_t line_no = 0;
  bool first = true;
  while (std::getline(in, line)) {
    ++line_no;
    // A UTF-8 byte-order mark (spreadsheets' "CSV UTF-8" export) is not part of the first cell.
    if (line_no == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
    if (trim(line).empty()) continue;
    const auto cells = split(line);
    if (first) {
      first = false;
      t.columns = cells.size();
      const bool header = std::none_of(cells.begin(), cells.end(), [](std::string_view c) {
        return parse_number(c).has_value();
      });
      if (header) {
        for (auto c : cells)
          t.header.emplace_back(c);
        continue;
      }
    }
    if (cells.size() != t.columns) {
      throw ConfigError(fmt::format("{}: line {} has {} columns, expected {} like the first line",
                                    path, line_no, cells.size(), t.columns));
    }
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const auto v = parse_number(cells[c]);
      if (!v) {
        throw ConfigError(fmt::format("{}: line {}, {}: '{}' is not a number", path, line_no,
                                      t.column_name(c), cells[c]));
      }
      // Every value becomes a 32-bit float (features, targets, labels): one past its range would
      // be an infinity there.
      if (std::abs(*v) > std::numeric_limits<float>::max()) {
        throw ConfigError(fmt::format(
            "{}: line {}, {}: '{}' is too large for a 32-bit float (at most {:.3g} in magnitude)",
            path, line_no, t.column_name(c), cells[c], std::numeric_limits<float>::max()));
      }
      t.values.push_back(*v);
    }
    t.line_of_row.push_back(line_no);
  }
  if (t.rows() == 0) throw ConfigError(fmt::format("{} holds no data rows", path));
  return t;
}

std::int64_t to_label(const Table& t, std::size_t row, std::size_t column) {
  const double v = t.values[row * t.columns + column];
  if (v != std::floor(v) || v < 0 || v > kMaxLabel) {
    throw ConfigError(
        fmt::format("{}: line {}, {}: label {} is out of range (labels are integers 0..{})", t.path,
                    t.line_of_row[row], t.column_name(column), v, kMaxLabel));
  }
  return static_cast<std::int64_t>(v);
}

int classes_of(const Dataset& d) {
  const auto it = std::max_element(d.labels.begin(), d.labels.end());
  return it == d.labels.end() ? 0 : static_cast<int>(*it) + 1;
}

std::size_t find_label_column(const Table& t, const std::string& spec) {
  if (spec.empty()) return t.columns - 1;
  for (std::size_t c = 0; c < t.header.size(); ++c) {
    if (t.header[c] == spec) return c;
  }
  std::size_t index = 0;
  const auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), index);
  if (ec == std::errc() && end == spec.data() + spec.size()) {
    if (index >= t.columns) {
      throw ConfigError(fmt::format("--label_column {}: {} has only {} columns (0..{})", spec,
                                    t.path, t.columns, t.columns - 1));
    }
    return index;
  }
  std::string columns;
  for (std::size_t c = 0; c < t.header.size(); ++c)
    columns += fmt::format("{}'{}'", c == 0 ? "" : ", ", t.header[c]);
  throw ConfigError(fmt::format(
      "--label_column {}: {} has no such column{}", spec, t.path,
      t.header.empty() ? " (it has no header; give a 0-based index)"
                       : fmt::format(" (its columns: {}; or give a 0-based index)", columns)));
}

// The target columns of a regression CSV: the comma-separated names or indices of `spec` ("":
// the last column), each once.
std::vector<std::size_t> find_target_columns(const Table& t, const std::string& spec) {
  std::vector<std::size_t> columns;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = spec.find(',', start);
    const std::string one(trim(
        std::string_view(spec).substr(start, comma == std::string::npos ? comma : comma - start)));
    if (one.empty() && !spec.empty()) {
      throw ConfigError(fmt::format("--label_column {}: an empty column name", spec));
    }
    const std::size_t c = find_label_column(t, one);
    if (std::find(columns.begin(), columns.end(), c) != columns.end()) {
      throw ConfigError(
          fmt::format("--label_column {}: {} is named twice", spec, t.column_name(c)));
    }
    columns.push_back(c);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return columns;
}

Dataset read_regression(const Table& t, const std::string& spec) {
  const std::vector<std::size_t> targets = find_target_columns(t, spec);
  if (targets.size() >= t.columns) {
    throw ConfigError(fmt::format("{}: no feature columns besides the target(s)", t.path));
  }
  Dataset d;
  d.width = static_cast<std::int64_t>(t.columns - targets.size());
  d.height = 1;
  d.channels = 1;
  d.target_dims = static_cast<std::int64_t>(targets.size());
  d.num_classes = 1;
  d.images.reserve(t.rows() * static_cast<std::size_t>(d.width));
  d.targets.reserve(t.rows() * targets.size());
  for (std::size_t r = 0; r < t.rows(); ++r) {
    for (std::size_t c = 0; c < t.columns; ++c) {
      if (std::find(targets.begin(), targets.end(), c) == targets.end()) {
        d.images.push_back(static_cast<float>(t.values[r * t.columns + c]));
      }
    }
    for (std::size_t c : targets)
      d.targets.push_back(static_cast<float>(t.values[r * t.columns + c]));
  }
  d.labels.assign(t.rows(), 0);
  return d;
}

}  // namespace

Dataset read_csv(const std::string& path, const CsvOptions& options) {
  const Table t = read_table(path);
  if (options.regression) {
    if (options.label_column == "none") {
      throw ConfigError("--label_column none: --target regression needs target columns");
    }
    return read_regression(t, options.label_column);
  }
  if (options.label_column.find(',') != std::string::npos) {
    throw ConfigError(
        fmt::format("--label_column {}: several columns are regression targets; they need --target "
                    "regression (a class label is one column)",
                    options.label_column));
  }
  const bool labelled = options.label_column != "none";
  const std::size_t label = labelled ? find_label_column(t, options.label_column) : t.columns;
  const std::size_t features = labelled ? t.columns - 1 : t.columns;
  if (features == 0)
    throw ConfigError(fmt::format("{}: no feature columns besides the label", path));
  Dataset d;
  d.width = static_cast<std::int64_t>(features);
  d.height = 1;
  d.channels = 1;
  d.images.reserve(t.rows() * features);
  for (std::size_t r = 0; r < t.rows(); ++r) {
    for (std::size_t c = 0; c < t.columns; ++c) {
      if (c != label) d.images.push_back(static_cast<float>(t.values[r * t.columns + c]));
    }
    d.labels.push_back(labelled ? to_label(t, r, label) : 0);
  }
  d.num_classes = classes_of(d);
  return d;
}

Dataset read_csv_pair(const std::string& x_path, const std::string& y_path,
                      const CsvOptions& options) {
  const Table x = read_table(x_path);
  const Table y = read_table(y_path);
  if (x.rows() != y.rows()) {
    throw ConfigError(
        fmt::format("{} has {} rows but {} has {} labels", x_path, x.rows(), y_path, y.rows()));
  }
  if (options.regression) {
    Dataset d;
    d.width = static_cast<std::int64_t>(x.columns);
    d.height = 1;
    d.channels = 1;
    d.images.assign(x.values.begin(), x.values.end());
    d.targets.assign(y.values.begin(), y.values.end());
    d.target_dims = static_cast<std::int64_t>(y.columns);
    d.num_classes = 1;
    d.labels.assign(y.rows(), 0);
    return d;
  }
  if (y.columns != 1) {
    throw ConfigError(
        fmt::format("{}: a label file has exactly one column, found {} (several columns are "
                    "regression targets: --target regression)",
                    y_path, y.columns));
  }
  Dataset d;
  d.width = static_cast<std::int64_t>(x.columns);
  d.height = 1;
  d.channels = 1;
  d.images.assign(x.values.begin(), x.values.end());
  for (std::size_t r = 0; r < y.rows(); ++r)
    d.labels.push_back(to_label(y, r, 0));
  d.num_classes = classes_of(d);
  return d;
}

}  // namespace psgd::nn
