#include "experiments/cluster_file.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"

namespace psgd {
namespace {

void only_keys(const nlohmann::json& j, const std::set<std::string>& keys,
               const std::string& where) {
  for (const auto& [key, value] : j.items()) {
    if (!keys.count(key)) {
      throw ConfigError(fmt::format("{}: unknown key \"{}\" (expected one of: {})", where, key,
                                    fmt::join(keys, ", ")));
    }
  }
}

std::string text(const nlohmann::json& j, const char* key, const std::string& where,
                 bool required) {
  if (!j.contains(key)) {
    if (required) throw ConfigError(fmt::format("{}: \"{}\" is missing", where, key));
    return "";
  }
  if (!j.at(key).is_string() || j.at(key).get<std::string>().empty()) {
    throw ConfigError(fmt::format("{}: \"{}\" must be a non-empty string", where, key));
  }
  return j.at(key).get<std::string>();
}

int integer(const nlohmann::json& j, const char* key, const std::string& where, int fallback,
            int lo, int hi) {
  if (!j.contains(key)) return fallback;
  const auto& v = j.at(key);
  if (!v.is_number_integer() || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi) {
    throw ConfigError(
        fmt::format("{}: \"{}\" must be an integer from {} to {}", where, key, lo, hi));
  }
  return v.get<int>();
}

}  // namespace

ClusterFile read_cluster_file(const std::string& path) {
  const std::string where = "--cluster " + path;
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot open the file", where));
  ClusterFile c;
  try {
    c.json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("{}: not valid JSON: {}", where, e.what()));
  }
  if (!c.json.is_object()) throw ConfigError(fmt::format("{}: expected a JSON object", where));
  only_keys(c.json, {"server", "passphrase_file", "workers", "ssh"}, where);
  if (c.json.contains("ssh")) {  // for the launchers (launch_ssh.sh); checked here all the same
    const auto& ssh = c.json.at("ssh");
    if (!ssh.is_object()) {
      throw ConfigError(fmt::format(
          "{}: \"ssh\" must be an object with port, identity_file or known_hosts", where));
    }
    only_keys(ssh, {"port", "identity_file", "known_hosts"}, where + " ssh");
    integer(ssh, "port", where + " ssh", 22, 1, 65535);
    text(ssh, "identity_file", where + " ssh", false);
    text(ssh, "known_hosts", where + " ssh", false);
  }
  if (!c.json.contains("server") || !c.json.at("server").is_object()) {
    throw ConfigError(fmt::format("{}: \"server\" must be an object with \"address\"", where));
  }
  const auto& server = c.json.at("server");
  only_keys(server, {"address", "port"}, where + " server");
  c.address = text(server, "address", where + " server", true);
  c.port = integer(server, "port", where + " server", 55555, 1, 65535);
  // As the launchers take the "ssh" object's paths: a relative path from the file's directory,
  // "~/" from the home directory, so the file means the same from wherever it is used.
  c.passphrase_file = text(c.json, "passphrase_file", where, false);
  if (c.passphrase_file.starts_with("~/")) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') c.passphrase_file = home + c.passphrase_file.substr(1);
  } else if (!c.passphrase_file.empty() && c.passphrase_file.front() != '/') {
    const auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) c.passphrase_file = (dir / c.passphrase_file).string();
  }
  if (!c.json.contains("workers") || !c.json.at("workers").is_array() ||
      c.json.at("workers").empty()) {
    throw ConfigError(fmt::format("{}: \"workers\" must be a non-empty list of hosts", where));
  }
  int i = 0;
  for (const auto& w : c.json.at("workers")) {
    const std::string at = fmt::format("{} workers[{}]", where, i++);
    if (!w.is_object()) throw ConfigError(fmt::format("{}: expected an object with \"host\"", at));
    only_keys(w, {"host", "slots", "dataset", "user"}, at);
    text(w, "host", at, true);
    text(w, "dataset", at, false);
    text(w, "user", at, false);
    c.slots += integer(w, "slots", at, 1, 1, 1024);
  }
  return c;
}

}  // namespace psgd
