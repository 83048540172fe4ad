#pragma once
// The TorchScript models tests train (--model script:FILE), written at test time by the committed
// tests/python/make_models.py with Debian's python3-torch. Without it the tests that need them
// skip with one line saying what to install.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#ifndef PSGD_MAKE_MODELS
#error "define PSGD_MAKE_MODELS as the path of tests/python/make_models.py"
#endif

namespace psgd::testing {

// The directory holding make_models.py's files, written once per test process; empty (and
// `why` set) when they cannot be made.
inline std::string script_models(std::string* why = nullptr) {
  static std::once_flag once;
  static std::string dir, reason;
  std::call_once(once, [] {
    const auto path = std::filesystem::temp_directory_path() /
                      ("psgd-script-models-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    const std::string log = (path / "make_models.log").string();
    const std::string command =
        "/usr/bin/python3 " PSGD_MAKE_MODELS " '" + path.string() + "' > '" + log + "' 2>&1";
    const int rc = std::system(command.c_str());
    if (rc == 0) {
      dir = path.string();
      std::atexit([] { std::filesystem::remove_all(dir); });
      return;
    }
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    reason = WIFEXITED(rc) && WEXITSTATUS(rc) == 77
                 ? "Debian's python3-torch is not installed (scripts/setup.sh "
                   "installs it): no TorchScript models to train"
                 : "tests/python/make_models.py failed: " + text.str();
    std::filesystem::remove_all(path);
  });
  if (why) *why = reason;
  return dir;
}

}  // namespace psgd::testing

// In a test: the directory of the TorchScript models, or skip the test saying why.
#define PSGD_SCRIPT_MODELS_OR_SKIP(dir)                                                       \
  std::string dir;                                                                            \
  do {                                                                                        \
    std::string why_;                                                                         \
    dir = ::psgd::testing::script_models(&why_);                                              \
    if (dir.empty() && why_.find("not installed") != std::string::npos) GTEST_SKIP() << why_; \
    ASSERT_FALSE(dir.empty()) << why_;                                                        \
  } while (0)
