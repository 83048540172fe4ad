#pragma once
// Small helpers for what the programs print.
#include <fmt/format.h>

#include "core/error.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <string>

namespace psgd {

// 12345.6 -> "12,346"
inline std::string fmt_count(double value) {
  auto n = static_cast<long long>(std::llround(value));
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// 75.3 -> "1:15", 3725 -> "1:02:05"
inline std::string fmt_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

inline std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Runs a program's body and turns the errors that end it into its exit code, after one line on
// stderr prefixed with the program's name: 2 for a ConfigError (bad flags, data or job), 1 for
// any other psgd Error (I/O, a protocol violation) and for any other exception (a library's,
// such as libtorch's c10::Error): never an uncaught exception, which would abort the process.
template <class Body>
int exit_code_of(const char* program, Body&& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 2;
  } catch (const Error& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
}

}  // namespace psgd
