#include "experiments/run_dir.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace psgd {
namespace fs = std::filesystem;

std::string default_run_dir(const JobSpec& spec) {
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::system_clock::to_time_t(now);
  return fmt::format("runs/{:%Y%m%d-%H%M%S}-{}", fmt::gmtime(t), spec.short_name());
}

namespace {

constexpr const char* kMetricsHeader =
    "epoch,iteration,wall_s,virtual_s,train_loss,test_loss,test_accuracy,bytes_up,"
    "bytes_down,samples,validation_loss,validation_accuracy,learn_rate,test_rmse,test_r2,"
    "validation_rmse,validation_r2\n";
constexpr const char* kWorkersHeader =
    "epoch,worker,host,iterations,samples,compute_s,encode_s,wait_s,transfer_s,"
    "decode_s,apply_s,held_s,bytes_up,bytes_down,compression_error,local_steps,dropped,"
    "staleness_mean,staleness_max\n";

// What a run leaves in its directory (a partial run leaves some of them).
constexpr const char* kRunFiles[] = {"config.json",   "metrics.csv",    "workers.csv",
                                     "summary.json",  "checkpoint.bin", "model.pt",
                                     "state_dict.pt", "timeline.json",  "tensorboard"};

// The run's summary.json in `dir`: an object, or null when there is none or it does not parse.
nlohmann::json summary_in(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "summary.json");
  if (!in) return nullptr;
  nlohmann::json summary = nlohmann::json::parse(in, nullptr, false);
  return summary.is_object() ? summary : nullptr;
}

// Whether the run in `dir` completed, as its summary.json says.
bool completed_run(const std::string& dir) {
  const nlohmann::json summary = summary_in(dir);
  return summary.is_object() && summary.value("ok", false);
}

// Whether the run in `dir` stopped before its first update, with nothing trained and nothing to
// resume: its summary.json counts no iteration and it wrote no checkpoint.
bool stopped_before_training(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "checkpoint.bin", ec)) return false;
  const nlohmann::json summary = summary_in(dir);
  return summary.is_object() && summary.contains("iterations") && summary["iterations"] == 0;
}

}  // namespace

std::vector<std::string> run_files_in(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* name : kRunFiles)
    if (fs::exists(fs::path(dir) / name, ec)) found.push_back(name);
  return found;
}

void RunDirectory::check_new(const std::string& path) {
  const std::vector<std::string> existing = run_files_in(path);
  if (existing.empty()) return;
  if (completed_run(path)) {
    throw ConfigError(fmt::format(
        "--output {}: holds a finished run (summary.json); choose another directory", path));
  }
  if (stopped_before_training(path)) {
    throw ConfigError(fmt::format(
        "--output {}: holds a run that stopped before its first update ({}; its summary.json "
        "counts 0 iterations): nothing in it was trained, so remove it (rm -r {}) or choose "
        "another directory",
        path, fmt::join(existing, ", "), path));
  }
  throw ConfigError(fmt::format(
      "--output {}: holds a run that did not complete ({}); continue it with init_server --resume "
      "{} (if it wrote checkpoint.bin), or choose another directory",
      path, fmt::join(existing, ", "), path));
}

void RunDirectory::lock(const char* flag) {
  lock_fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock_fd_ < 0) {
    throw ConfigError(
        fmt::format("{} {}: cannot open the run directory: {}", flag, path_, std::strerror(errno)));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) == 0) return;
  const int err = errno;
  ::close(lock_fd_);
  lock_fd_ = -1;
  if (err == EWOULDBLOCK) {
    throw ConfigError(fmt::format(
        "{} {}: another init_server is running this run now (its config.json provenance names "
        "its host and pid); a run that is still going cannot be resumed or written again: wait "
        "for it to end, or stop it first",
        flag, path_));
  }
  throw ConfigError(
      fmt::format("{} {}: cannot lock the run directory: {}", flag, path_, std::strerror(err)));
}

RunDirectory::~RunDirectory() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

RunDirectory::RunDirectory(std::string path) : path_(std::move(path)) {
  check_new(path_);
  std::error_code ec;
  made_directory_ = !fs::exists(path_, ec);
  fs::create_directories(path_, ec);
  if (ec) {
    throw ConfigError(
        fmt::format("--output {}: cannot create the run directory: {}", path_, ec.message()));
  }
  lock("--output");
  // Another server may have written its files between the check and the lock.
  try {
    check_new(path_);
  } catch (...) {
    made_directory_ = false;
    throw;
  }
  try {
    write_file_atomic(file("metrics.csv"), std::string_view(kMetricsHeader));
    write_file_atomic(file("workers.csv"), std::string_view(kWorkersHeader));
    metrics_ = AppendFile(file("metrics.csv"));
    workers_ = AppendFile(file("workers.csv"));
  } catch (const IoError& e) {
    discard();
    throw ConfigError(fmt::format("--output {}: {}", path_, e.what()));
  }
}

void RunDirectory::discard() noexcept {
  if (resumed_) return;
  metrics_ = AppendFile();
  workers_ = AppendFile();
  std::error_code ec;
  for (const char* name : {"config.json", "metrics.csv", "workers.csv"})
    fs::remove(fs::path(path_) / name, ec);
  if (made_directory_) fs::remove(path_, ec);  // only when empty
}

namespace {

// Keeps the header and the rows whose first field (the epoch) is at most `last_epoch`.
void keep_rows_up_to(const std::string& path, int last_epoch) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--resume: {} is missing", path));
  std::string text, line;
  bool header = true;
  while (std::getline(in, line)) {
    if (!header) {
      const auto comma = line.find(',');
      int epoch = 0;
      try {
        epoch = std::stoi(line.substr(0, comma));
      } catch (const std::exception&) {
        continue;  // a row cut short by the crash
      }
      if (comma == std::string::npos || epoch > last_epoch) continue;
    }
    header = false;
    text += line + "\n";
  }
  write_file_atomic(path, std::string_view(text));
}

}  // namespace

RunDirectory::RunDirectory(std::string path, int epochs_done)
    : path_(std::move(path)), resumed_(true) {
  if (!fs::is_directory(path_)) {
    throw ConfigError(fmt::format("--resume {}: not a run directory", path_));
  }
  lock("--resume");
  if (completed_run(path_)) {
    throw ConfigError(fmt::format("--resume {}: this run already completed (summary.json)", path_));
  }
  try {
    keep_rows_up_to(file("metrics.csv"), epochs_done);
    keep_rows_up_to(file("workers.csv"), epochs_done);
    metrics_ = AppendFile(file("metrics.csv"));
    workers_ = AppendFile(file("workers.csv"));
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("--resume {}: {}", path_, e.what()));
  }
}

std::string RunDirectory::file(const std::string& name) const {
  return (fs::path(path_) / name).string();
}

void RunDirectory::write_config(const nlohmann::json& config) {
  write_file_atomic(file("config.json"), std::string_view(config.dump(2) + "\n"));
}

void RunDirectory::write_summary(const nlohmann::json& summary) {
  write_file_atomic(file("summary.json"), std::string_view(summary.dump(2) + "\n"));
}

void RunDirectory::sync() {
  metrics_.sync();
  workers_.sync();
}

void RunDirectory::append_metrics(const MetricsRow& r, bool with_wall) {
  auto opt = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.6g}", *v) : std::string();
  };
  const std::string wall = with_wall ? fmt::format("{:.4f}", r.wall_s) : std::string();
  metrics_.append(fmt::format(
      "{},{},{},{},{},{:.6g},{:.6f},{},{},{},{},{},{:.8g},{},{},{},{}\n", r.epoch, r.iteration,
      wall, opt(r.virtual_s), opt(r.train_loss), r.test_loss, r.test_accuracy, r.bytes_up,
      r.bytes_down, r.samples, opt(r.validation_loss), opt(r.validation_accuracy), r.learn_rate,
      opt(r.test_rmse), opt(r.test_r2), opt(r.validation_rmse), opt(r.validation_r2)));
}

void RunDirectory::append_worker(const WorkerRow& r) {
  const std::string error =
      r.compression_error_count
          ? fmt::format("{:.6g}", r.compression_error_sum / r.compression_error_count)
          : std::string();
  workers_.append(fmt::format(
      "{},{},{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{},{},{},{},{},{:.4f},{}\n",
      r.epoch, r.worker, r.host, r.iterations, r.samples, r.times.compute_s, r.times.encode_s,
      r.times.wait_s, r.transfer_s, r.times.decode_s, r.times.apply_s, r.held_s, r.bytes_up,
      r.bytes_down, error, r.local_steps, r.dropped, r.staleness_mean(), r.staleness_max));
}

}  // namespace psgd
