#pragma once
// Binds options structs that list their fields (core/fields.h) to a CLI11 app: every field becomes
// --name with its help, and writes its member only when given, so values already in the struct
// (defaults, or a --config file read first) stay unless the command line overrides them.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

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
