#pragma once
// Child processes for integration tests: started with posix_spawn, output captured to a file,
// waited for with a deadline, and killed (with their exit) when the test ends, pass or fail.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace psgd::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("psgd-it-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Process {
 public:
  // Runs `program args...` with stdout to out_file and stderr to err_file, in working directory
  // `cwd` (empty: this process's).
  Process(const std::string& program, const std::vector<std::string>& args,
          const std::string& out_file, const std::string& err_file, const std::string& cwd = "")
      : out_file_(out_file), err_file_(err_file) {
    std::vector<std::string> all{program};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
    if (posix_spawn(&pid_, program.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() { kill(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Sends `sig` (SIGSTOP, SIGKILL, ...) without reaping: running() and wait() see the outcome.
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // True while the process runs; reaps it (keeping its exit code) once it has exited.
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }

  // Exit code, or nullopt if still running after `timeout` (the process is then killed).
  std::optional<int> wait(std::chrono::duration<double> timeout) {
    if (exit_code_) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill();
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return exit_code_;
  }

  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  std::string out() const { return read_file(out_file_); }
  std::string err() const { return read_file(err_file_); }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_file_, err_file_;
};

// Runs a program to completion (at most `timeout`) and returns {exit code or -1, stdout, stderr}.
struct Outcome {
  int code = -1;
  std::string out, err;
};
inline Outcome run(const std::string& program, const std::vector<std::string>& args,
                   const TempDir& dir, double timeout_s = 60) {
  static std::atomic<int> n{0};
  const int k = n++;
  Process p(program, args, dir.file("out" + std::to_string(k)),
            dir.file("err" + std::to_string(k)));
  auto code = p.wait(std::chrono::duration<double>(timeout_s));
  return {code.value_or(-1), p.out(), p.err()};
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s)
    n += c == '\n';
  return n;
}

}  // namespace psgd::testing
