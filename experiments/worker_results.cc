#include "experiments/worker_results.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/files.h"

namespace psgd {

namespace {

// A log line is cut to this length (a worker's lines are short; this bounds a runaway one).
constexpr std::size_t kLogLineBytes = 4096;
// The worker keeps this much of its log allowance for the last piece's note on what it dropped.
constexpr std::size_t kNoteReserve = 512;

template <class T>
bool parse_number(std::string_view text, T& out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// The longest prefix of `text` of at most `limit` bytes that ends with '\n' (all of it if it
// fits; `limit` bytes if no line ends within them).
std::size_t piece_length(const std::string& text, std::size_t limit) {
  if (text.size() <= limit) return text.size();
  const std::size_t nl = text.rfind('\n', limit - 1);
  return nl == std::string::npos ? limit : nl + 1;
}

}  // namespace

std::string trace_line(const TraceRow& r) {
  return fmt::format("{:.6f},{},{},{:.6g},{},{},{}\n", r.wall_s, r.epoch, r.batch, r.loss,
                     r.samples, r.bytes_sent, r.bytes_received);
}

std::optional<TraceRow> parse_trace_line(std::string_view line) {
  std::string_view fields[7];
  std::size_t n = 0;
  while (true) {
    const std::size_t comma = line.find(',');
    if (n == 7) return std::nullopt;
    fields[n++] = line.substr(0, comma);
    if (comma == std::string_view::npos) break;
    line.remove_prefix(comma + 1);
  }
  if (n != 7) return std::nullopt;
  TraceRow r;
  if (!parse_number(fields[0], r.wall_s) || !std::isfinite(r.wall_s) || r.wall_s < 0) return {};
  if (!parse_number(fields[1], r.epoch) || r.epoch < 1) return std::nullopt;
  if (!parse_number(fields[2], r.batch) || r.batch < 0) return std::nullopt;
  if (!parse_number(fields[3], r.loss)) return std::nullopt;  // nan and inf are a loss's values
  if (!parse_number(fields[4], r.samples) || r.samples < 0) return std::nullopt;
  if (!parse_number(fields[5], r.bytes_sent)) return std::nullopt;
  if (!parse_number(fields[6], r.bytes_received)) return std::nullopt;
  return r;
}

TraceLearner::TraceLearner(Learner& inner, const Clock& clock, std::int64_t held,
                           std::int64_t start_batch, int batch_size,
                           std::function<LinkTraffic()> traffic, Sink sink)
    : inner_(inner),
      clock_(clock),
      origin_(clock.now()),
      held_(std::max<std::int64_t>(held, 1)),
      batch_(start_batch),
      seen_(start_batch * batch_size),
      traffic_(std::move(traffic)),
      sink_(std::move(sink)) {}

StepStats TraceLearner::compute_gradient() {
  const StepStats stats = inner_.compute_gradient();
  record(stats);
  return stats;
}

StepStats TraceLearner::begin_gradient(std::span<const std::size_t> cuts) {
  staged_ = inner_.begin_gradient(cuts);
  return *staged_;
}

std::size_t TraceLearner::continue_backward() {
  const std::size_t ready = inner_.continue_backward();
  if (ready == 0 && staged_) {
    record(*staged_);
    staged_.reset();
  }
  return ready;
}

void TraceLearner::record(const StepStats& stats) {
  const LinkTraffic bytes = traffic_ ? traffic_() : LinkTraffic{};
  sink_(TraceRow{.wall_s = std::max(0.0, clock_.now() - origin_),
                 .epoch = 1 + seen_ / held_,
                 .batch = batch_++,
                 .loss = stats.loss,
                 .samples = stats.samples,
                 .bytes_sent = bytes.sent,
                 .bytes_received = bytes.received});
  seen_ += stats.samples;
}

void WorkerLogOutbox::log(std::string_view line) {
  line = line.substr(0, kLogLineBytes);
  if (log_bytes_ + line.size() + 1 > kWorkerLogLimit - kNoteReserve) {
    ++dropped_lines_;
    return;
  }
  log_bytes_ += line.size() + 1;
  log_.append(line);
  log_ += '\n';
}

void WorkerLogOutbox::row(const TraceRow& row) {
  const std::string line = trace_line(row);
  if (trace_bytes_ + line.size() > kWorkerTraceLimit) {
    ++dropped_rows_;
    return;
  }
  trace_bytes_ += line.size();
  trace_ += line;
}

std::vector<WorkerLog> WorkerLogOutbox::take(bool last) {
  if (last && (dropped_lines_ > 0 || dropped_rows_ > 0)) {
    log_ += fmt::format(
        "psgd: this worker did not send {} more log lines and {} more trace rows (limits: {} "
        "MiB of log, {} MiB of trace per worker)\n",
        dropped_lines_, dropped_rows_, kWorkerLogLimit >> 20, kWorkerTraceLimit >> 20);
    dropped_lines_ = dropped_rows_ = 0;
  }
  std::vector<WorkerLog> pieces;
  while (pending()) {
    WorkerLog piece;
    const std::size_t l = piece_length(log_, kWorkerLogPieceBytes);
    const std::size_t t = piece_length(trace_, kWorkerLogPieceBytes);
    piece.log = log_.substr(0, l);
    piece.trace = trace_.substr(0, t);
    log_.erase(0, l);
    trace_.erase(0, t);
    pieces.push_back(std::move(piece));
  }
  if (last) {
    if (pieces.empty()) pieces.emplace_back();
    pieces.back().last = true;
  }
  return pieces;
}

WorkerResults::WorkerResults(int node_count)
    : files_(static_cast<std::size_t>(std::max(node_count, 0))) {}

bool WorkerResults::complete(int worker) const {
  return worker >= 0 && worker < static_cast<int>(files_.size()) &&
         files_[static_cast<std::size_t>(worker)].last;
}

std::int64_t WorkerResults::rows(int worker) const {
  return files_.at(static_cast<std::size_t>(worker)).rows;
}

void WorkerResults::add(int worker, const WorkerLog& piece) {
  if (worker < 0 || worker >= static_cast<int>(files_.size())) return;
  Files& f = files_[static_cast<std::size_t>(worker)];
  if (f.last) return;  // nothing follows a last piece
  ++f.pieces;
  f.last = piece.last;
  std::string_view log = piece.log;
  std::string_view trace = piece.trace;
  if (log.size() > kWorkerLogPieceBytes || trace.size() > kWorkerLogPieceBytes) {
    f.oversized = true;
    log = log.substr(0, kWorkerLogPieceBytes);
    trace = trace.substr(0, kWorkerLogPieceBytes);
  }
  // The log is text for a researcher's terminal: no control characters but newline and tab.
  for (const char c : log) {
    if (f.log.size() >= kWorkerLogLimit) {
      f.log_truncated = true;
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    f.log += (u < 0x20 && c != '\n' && c != '\t') || u == 0x7f ? '?' : c;
  }
  // The trace keeps only whole, well-formed rows.
  while (!trace.empty()) {
    const std::size_t nl = trace.find('\n');
    if (nl == std::string_view::npos) {
      ++f.malformed;  // a row cut off: pieces end with whole lines
      break;
    }
    const std::string_view line = trace.substr(0, nl);
    trace.remove_prefix(nl + 1);
    if (!parse_trace_line(line)) {
      ++f.malformed;
      continue;
    }
    if (f.trace.size() + line.size() + 1 > kWorkerTraceLimit) {
      f.trace_truncated = true;
      continue;
    }
    f.trace.append(line);
    f.trace += '\n';
    ++f.rows;
  }
}

void WorkerResults::lost(int worker, const std::string& why) {
  if (worker < 0 || worker >= static_cast<int>(files_.size())) return;
  files_[static_cast<std::size_t>(worker)].lost = why;
}

void WorkerResults::load(const std::string& run_dir) {
  auto read = [](const std::string& path, std::size_t limit) {
    std::ifstream in(path, std::ios::binary);
    std::string text(limit, '\0');
    in.read(text.data(), static_cast<std::streamsize>(limit));
    text.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
    return text;
  };
  for (std::size_t w = 0; w < files_.size(); ++w) {
    const std::string dir = fmt::format("{}/workers/{}", run_dir, w);
    if (!std::filesystem::exists(dir)) continue;
    Files& f = files_[w];
    f.log = read(dir + "/log.txt", kWorkerLogLimit);
    if (f.log.size() < kWorkerLogLimit) f.log += "psgd: the run was resumed here\n";
    // Our own file, but read as any piece: only whole rows count.
    std::string trace = read(dir + "/trace.csv", kWorkerTraceLimit + 128);
    const std::size_t header = trace.find('\n');
    std::string_view rows = header == std::string::npos
                                ? std::string_view()
                                : std::string_view(trace).substr(header + 1);
    while (!rows.empty()) {
      const std::size_t nl = rows.find('\n');
      if (nl == std::string_view::npos) break;
      const std::string_view line = rows.substr(0, nl);
      rows.remove_prefix(nl + 1);
      if (!parse_trace_line(line) || f.trace.size() + nl + 1 > kWorkerTraceLimit) continue;
      f.trace.append(line);
      f.trace += '\n';
      ++f.rows;
    }
  }
}

void WorkerResults::reopen(int worker) {
  if (worker < 0 || worker >= static_cast<int>(files_.size())) return;
  Files& f = files_[static_cast<std::size_t>(worker)];
  f.last = false;
  if (f.log.size() < kWorkerLogLimit)
    f.log += "psgd: a new client takes over this worker's slot from here\n";
}

nlohmann::json WorkerResults::write(const std::string& run_dir) const {
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t w = 0; w < files_.size(); ++w) {
    const Files& f = files_[w];
    const std::string dir = fmt::format("{}/workers/{}", run_dir, w);
    std::filesystem::create_directories(dir);
    write_file_atomic(dir + "/log.txt", f.log);
    write_file_atomic(dir + "/trace.csv", fmt::format("{}\n{}", kTraceColumns, f.trace));
    nlohmann::json entry{
        {"worker", w}, {"log_bytes", f.log.size()}, {"trace_rows", f.rows}, {"complete", f.last}};
    std::vector<std::string> notes;
    if (!f.last) {
      notes.push_back(f.pieces == 0 ? "nothing arrived from this worker"
                                    : "its last piece never arrived: the files hold what it sent "
                                      "before");
      if (!f.lost.empty()) notes.push_back(f.lost);
    }
    if (f.malformed > 0)
      notes.push_back(fmt::format("{} malformed trace rows dropped", f.malformed));
    if (f.oversized) notes.push_back("a piece over the size limit was cut");
    if (f.log_truncated) notes.push_back(fmt::format("log cut at {} MiB", kWorkerLogLimit >> 20));
    if (f.trace_truncated)
      notes.push_back(fmt::format("trace cut at {} MiB", kWorkerTraceLimit >> 20));
    if (!notes.empty()) entry["missing"] = fmt::format("{}", fmt::join(notes, "; "));
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace psgd
