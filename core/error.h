#pragma once
// One error model for the whole project (STYLE.md §5): exceptions from a small hierarchy.
//
//   Error          base; anything psgd throws derives from it
//   ConfigError    the job as configured cannot run (bad flag value, impossible combination,
//                  missing data file); raised before any work starts
//   IoError        a recoverable I/O failure: a socket closed, a timeout, a short read
//   ProtocolError  a peer sent something malformed (bad magic, oversized frame, undecodable body);
//                  a subclass of IoError because the remedy is the same: drop that peer
//
// Asio handlers work with std::error_code and convert at the boundary. Check macros print both
// compared values with file:line, as gloo's GLOO_ENFORCE_EQ does.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace psgd {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigError : public Error {
 public:
  using Error::Error;
};

class IoError : public Error {
 public:
  using Error::Error;
};

class ProtocolError : public IoError {
 public:
  using IoError::IoError;
};

namespace detail {
[[noreturn]] void throw_check_failure(const char* file, int line, const std::string& what);
}  // namespace detail

}  // namespace psgd

#define PSGD_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) [[unlikely]] {                                                      \
      ::psgd::detail::throw_check_failure(                                           \
          __FILE__, __LINE__,                                                        \
          ::fmt::format("check failed: {}: {}", #cond, ::fmt::format(__VA_ARGS__))); \
    }                                                                                \
  } while (0)

#define PSGD_CHECK_OP(a, op, b, ...)                                                            \
  do {                                                                                          \
    const auto& psgd_a_ = (a);                                                                  \
    const auto& psgd_b_ = (b);                                                                  \
    if (!(psgd_a_ op psgd_b_)) [[unlikely]] {                                                   \
      ::psgd::detail::throw_check_failure(                                                      \
          __FILE__, __LINE__,                                                                   \
          ::fmt::format("check failed: {} {} {} ({} vs {}): {}", #a, #op, #b, psgd_a_, psgd_b_, \
                        ::fmt::format(__VA_ARGS__)));                                           \
    }                                                                                           \
  } while (0)

#define PSGD_CHECK_EQ(a, b, ...) PSGD_CHECK_OP(a, ==, b, __VA_ARGS__)
#define PSGD_CHECK_LE(a, b, ...) PSGD_CHECK_OP(a, <=, b, __VA_ARGS__)
#define PSGD_CHECK_LT(a, b, ...) PSGD_CHECK_OP(a, <, b, __VA_ARGS__)
#define PSGD_CHECK_GE(a, b, ...) PSGD_CHECK_OP(a, >=, b, __VA_ARGS__)
