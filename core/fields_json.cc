#include "core/fields_json.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace psgd::fields_json {
namespace {

[[noreturn]] void refuse(std::string_view where, std::string_view key, const std::string& why) {
  throw ConfigError(fmt::format("{}: \"{}\": {}", where, key, why));
}

template <class T>
T integer(const nlohmann::json& value, std::string_view key, std::string_view where) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
      refuse(where, key,
             fmt::format("{} is out of range (at most {})", v, std::numeric_limits<T>::max()));
    }
    return static_cast<T>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
        (v > 0 && static_cast<std::uint64_t>(v) >
                      static_cast<std::uint64_t>(std::numeric_limits<T>::max()))) {
      refuse(where, key,
             fmt::format("{} is out of range ({} to {})", v, std::numeric_limits<T>::min(),
                         std::numeric_limits<T>::max()));
    }
    return static_cast<T>(v);
  }
  if (value.is_number_float()) {
    // 1e3 or 1000.0 is the whole number 1000 (JSON has one number type; some writers give every
    // number a fraction or an exponent). 1000.5 is not, nor is a number past T's range.
    const double v = value.get<double>();
    if (!std::isfinite(v) || v != std::floor(v))
      refuse(where, key, fmt::format("{} is not a whole number", value.dump()));
    if (v < static_cast<double>(std::numeric_limits<T>::min()) ||
        v >= std::ldexp(1.0, std::numeric_limits<T>::digits)) {
      refuse(where, key,
             fmt::format("{} is out of range ({} to {})", value.dump(),
                         std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
    }
    return static_cast<T>(v);
  }
  refuse(where, key, fmt::format("expected a whole number, got {}", value.dump()));
}

}  // namespace

void read(const nlohmann::json& value, FlagChoice& member, std::string_view key,
          std::string_view where) {
  if (value.is_boolean()) {
    member.value = value.get<bool>() ? member.bare : member.off;
    return;
  }
  read(value, member.value, key, where);
}

void read(const nlohmann::json& value, bool& member, std::string_view key, std::string_view where) {
  if (!value.is_boolean())
    refuse(where, key, fmt::format("expected true or false, got {}", value.dump()));
  member = value.get<bool>();
}

void read(const nlohmann::json& value, int& member, std::string_view key, std::string_view where) {
  member = integer<int>(value, key, where);
}

void read(const nlohmann::json& value, std::int64_t& member, std::string_view key,
          std::string_view where) {
  member = integer<std::int64_t>(value, key, where);
}

void read(const nlohmann::json& value, std::uint64_t& member, std::string_view key,
          std::string_view where) {
  member = integer<std::uint64_t>(value, key, where);
}

void read(const nlohmann::json& value, double& member, std::string_view key,
          std::string_view where) {
  if (!value.is_number())
    refuse(where, key, fmt::format("expected a number, got {}", value.dump()));
  member = value.get<double>();
}

void read(const nlohmann::json& value, std::string& member, std::string_view key,
          std::string_view where) {
  if (!value.is_string())
    refuse(where, key, fmt::format("expected a string, got {}", value.dump()));
  member = value.get<std::string>();
}

void read(const nlohmann::json& value, std::vector<int>& member, std::string_view key,
          std::string_view where) {
  if (value.is_number()) {
    member = {integer<int>(value, key, where)};
    return;
  }
  if (!value.is_array()) {
    refuse(where, key, fmt::format("expected a number or a list of numbers, got {}", value.dump()));
  }
  std::vector<int> out;
  for (const auto& v : value)
    out.push_back(integer<int>(v, key, where));
  member = std::move(out);
}

}  // namespace psgd::fields_json
