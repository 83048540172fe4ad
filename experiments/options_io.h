#pragma once
// Binds options structs that list their fields (core/fields.h) to a CLI11 app: every field becomes
// --name with its help, and writes its member only when given, so values already in the struct
// (defaults, or a --config file read first) stay unless the command line overrides them.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/fields.h"

namespace psgd {

namespace options_io {
inline CLI::Option* bind(CLI::App& app, const std::string& flag, bool& member,
                         const std::string& help) {
  return app.add_flag(flag, member, help);
}
inline CLI::Option* bind(CLI::App& app, const std::string& flag, std::vector<int>& member,
                         const std::string& help) {
  return app.add_option(flag, member, help)->delimiter(',');
}
// --flag WORD, or the bare --flag meaning choice.bare (the help shows WORD and no default: the
// struct's help text names both).
inline CLI::Option* bind(CLI::App& app, const std::string& flag, FlagChoice& member,
                         const std::string& help) {
  CLI::callback_t set = [&member](const CLI::results_t& words) {
    member.value = words.empty() || words[0].empty() ? member.bare : words[0];
    return true;
  };
  return app.add_option(flag, set, help)->expected(0, 1)->type_name("WORD");
}
template <class T>
CLI::Option* bind(CLI::App& app, const std::string& flag, T& member, const std::string& help) {
  return app.add_option(flag, member, help);
}
}  // namespace options_io

// Adds one option per field of `options` to `app`, in field order, under `group`.
template <class Options>
void bind_fields(CLI::App& app, Options& options, const std::string& group) {
  Options::fields(options, [&](const char* name, auto& member, const auto& help) {
    options_io::bind(app, std::string("--") + name, member, std::string(help))->group(group);
  });
}

}  // namespace psgd
