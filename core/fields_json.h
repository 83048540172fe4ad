#pragma once
// JSON reading and writing of options structs that list their fields (core/fields.h). Config
// files, config.json's "job" and the Job the server sends to workers all go through these, so a
// key means what its flag means, and a value is refused (ConfigError naming the key) when it has
// the wrong type or does not fit the member: 4294967298 for an int, -1 for the seed, 1.5 for an
// integer, never silently wrapped or truncated.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/fields.h"

namespace psgd {

inline void to_json(nlohmann::json& j, const FlagChoice& choice) {
  j = choice.value;
}

namespace fields_json {
// Reads `value` into `member`; throws ConfigError "<where>: <key>: <why>".
void read(const nlohmann::json& value, bool& member, std::string_view key, std::string_view where);
void read(const nlohmann::json& value, int& member, std::string_view key, std::string_view where);
void read(const nlohmann::json& value, std::int64_t& member, std::string_view key,
          std::string_view where);
void read(const nlohmann::json& value, std::uint64_t& member, std::string_view key,
          std::string_view where);
void read(const nlohmann::json& value, double& member, std::string_view key,
          std::string_view where);
void read(const nlohmann::json& value, std::string& member, std::string_view key,
          std::string_view where);
// A list of ints, or a single int (a port).
void read(const nlohmann::json& value, std::vector<int>& member, std::string_view key,
          std::string_view where);
// A word, or a bool (its older spelling: true is choice.bare, false choice.off).
void read(const nlohmann::json& value, FlagChoice& member, std::string_view key,
          std::string_view where);
}  // namespace fields_json

// Writes every field of `options` as a key.
template <class Options>
void fields_to_json(const Options& options, nlohmann::json& out) {
  Options::fields(options,
                  [&](const char* name, const auto& member, const auto&) { out[name] = member; });
}

// Reads the keys of `in` that name fields of `options` and adds them to `consumed`; other keys are
// left for the caller (which refuses what nobody consumed). `where` prefixes errors, e.g.
// "--config job.json".
template <class Options>
void fields_from_json(const nlohmann::json& in, Options& options, std::set<std::string>& consumed,
                      std::string_view where) {
  Options::fields(options, [&](const char* name, auto& member, const auto&) {
    auto it = in.find(name);
    if (it == in.end()) return;
    fields_json::read(*it, member, name, where);
    consumed.insert(name);
  });
}

// The names of the fields of `options` that differ from a default-constructed Options, in field
// order (a flag that was set, when the default means "not given").
template <class Options>
std::vector<std::string> changed_fields(const Options& options) {
  nlohmann::json given, defaults;
  fields_to_json(options, given);
  fields_to_json(Options{}, defaults);
  std::vector<std::string> out;
  Options::fields(options, [&](const char* name, const auto&, const auto&) {
    if (given[name] != defaults[name]) out.emplace_back(name);
  });
  return out;
}

}  // namespace psgd
