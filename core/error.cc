#include "core/error.h"

#include <cstring>

namespace psgd::detail {

void throw_check_failure(const char* file, int line, const std::string& what) {
  const char* base = std::strrchr(file, '/');
  throw Error(fmt::format("{} ({}:{})", what, base ? base + 1 : file, line));
}

}  // namespace psgd::detail
