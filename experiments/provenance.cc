#include "experiments/provenance.h"

#include <fmt/chrono.h>
#include <unistd.h>
#include <asio/version.hpp>
#include <cereal/version.hpp>

#include <chrono>
#include <filesystem>
#include <thread>

#include "nn/version.h"
#include "psgd_revision.h"  // generated at build time by cmake/GitRevision.cmake

namespace psgd {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string psgd_revision() {
  return PSGD_GIT_REVISION;
}

std::string working_directory() {
  std::error_code ec;
  const auto cwd = std::filesystem::current_path(ec);
  return ec ? std::string() : cwd.string();
}

nlohmann::json provenance(const std::string& command_line) {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  return {
      {"psgd_revision", psgd_revision()},
      {"host", host_name()},
      {"cores", std::thread::hardware_concurrency()},
      {"started_utc", fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(t))},
      {"command_line", command_line},
      // Relative paths in the job (--dataset, --model script:F) are this directory's:
      // `evaluate RUN_DIR` reads them from here wherever it is run.
      {"working_directory", working_directory()},
      {"compiler", __VERSION__},
      {"libraries",
       {{"torch", nn::torch_version()},
        {"blas", nn::blas_description()},
        {"asio", fmt::format("{}.{}.{}", ASIO_VERSION / 100000, ASIO_VERSION / 100 % 1000,
                             ASIO_VERSION % 100)},
        {"cereal",
         fmt::format("{}.{}.{}", CEREAL_VERSION_MAJOR, CEREAL_VERSION_MINOR, CEREAL_VERSION_PATCH)},
        {"fmt", FMT_VERSION}}},
  };
}

}  // namespace psgd
