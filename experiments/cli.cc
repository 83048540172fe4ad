#include "experiments/cli.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "core/error.h"
#include "core/fields_json.h"
#include "experiments/cluster_file.h"
#include "experiments/options_io.h"
#include "experiments/simulate.h"

namespace psgd {
namespace {

// --config is read before the other flags are bound, so that the file's values become the
// defaults and flags given on the command line override them.
std::string find_config_arg(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) return argv[i + 1];
    if (a.rfind("--config=", 0) == 0) return a.substr(9);
  }
  return {};
}

// --config FILE: a JSON object whose keys are init_server flags (the job's, this server's and the
// simulation's), as the README promises; config.json's "job" object is one.
void load_config(const std::string& path, ServerOptions& out) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw ConfigError(fmt::format("--config {}: {}", path,
                                  std::filesystem::exists(path, ec)
                                      ? "not a file (give a JSON file of flags)"
                                      : "no such file"));
  }
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--config {}: cannot open the file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("--config {}: not valid JSON: {}", path, e.what()));
  }
  if (!j.is_object()) {
    throw ConfigError(fmt::format("--config {}: expected a JSON object of flags", path));
  }
  const std::string where = fmt::format("--config {}", path);
  std::set<std::string> consumed;
  fields_from_json(j, out.spec, consumed, where);
  fields_from_json(j, static_cast<ServerFlags&>(out), consumed, where);
  fields_from_json(j, out.sim, consumed, where);
  for (const auto& [key, value] : j.items()) {
    if (consumed.count(key)) continue;
    if (key == "config" || key == "check") {
      throw ConfigError(fmt::format("{}: \"{}\" is a command-line flag only", where, key));
    }
    throw ConfigError(fmt::format(
        "{}: unknown key \"{}\" (keys are init_server flags; see init_server --help)", where, key));
  }
}

// --network_file: a JSON object, read once so that a bad file stops the run before it starts.
nlohmann::json read_network_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--network_file {}: cannot open the file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("--network_file {}: not valid JSON: {}", path, e.what()));
  }
  if (!j.is_object()) {
    throw ConfigError(
        fmt::format("--network_file {}: expected a JSON object describing the network", path));
  }
  return j;
}

void report(const CLI::App& app, const CLI::ParseError& e, const char* extras_hint = nullptr) {
  // One clear line for the error, then where to look for help.
  std::cerr << app.get_name() << ": " << e.what();
  if (extras_hint != nullptr && dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr)
    std::cerr << " (" << extras_hint << ")";
  std::cerr << "\n"
            << "Run '" << app.get_name() << " --help' to see every option and its default.\n";
}

// CLI11's PositiveNumber and NonNegativeNumber say "Value 0 not in range 0.000000 to " and then
// the largest double in 309 digits; these say what is wanted.
double number_or_nan(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end == text.c_str() || *end != '\0' ? std::nan("") : v;
}
const CLI::Validator kPositive(
    [](std::string& text) -> std::string {
      const double v = number_or_nan(text);
      return v > 0 ? "" : "expected a number greater than 0, got " + text;
    },
    "> 0");
const CLI::Validator kNonNegative(
    [](std::string& text) -> std::string {
      const double v = number_or_nan(text);
      return v >= 0 ? "" : "expected a number of 0 or more, got " + text;
    },
    ">= 0");

// --resume RUN_DIR: the job is the one in RUN_DIR/config.json. Flags that only say where and how
// this server runs may be given; any other would change the job and is refused.
void resume_job(const CLI::App& app, const CLI::Option* resume, ServerOptions& out) {
  if (!out.config_file.empty()) {
    throw ConfigError(fmt::format(
        "--resume {} with --config {}: the job is the one in {}/config.json; give this server's "
        "own flags on the command line",
        out.resume, out.config_file, out.resume));
  }
  static const std::vector<std::string> allowed{"--working_ports",
                                                "--port_file",
                                                "--bind",
                                                "--passphrase_file",
                                                "--heartbeat_interval",
                                                "--dead_after",
                                                "--shared_memory",
                                                "--join_timeout",
                                                "--io_timeout",
                                                "--threads",
                                                "--busy_poll_us",
                                                "--checkpoint_every",
                                                "--crash_after_checkpoints",
                                                "--check"};
  for (const CLI::Option* o : app.get_options()) {
    if (o == resume || o->count() == 0) continue;
    const std::string name = o->get_name();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      throw ConfigError(fmt::format(
          "--resume {} continues the job in its config.json; {} would change it (only {} may "
          "be given)",
          out.resume, name, fmt::join(allowed, ", ")));
    }
  }
  const std::string path = out.resume + "/config.json";
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--resume {}: no config.json there", out.resume));
  JobSpec job;
  try {
    from_json(nlohmann::json::parse(in).at("job"), job);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(
        fmt::format("--resume {}: cannot read config.json: {}", out.resume, e.what()));
  }
  if (job.local_data) {
    throw ConfigError(fmt::format(
        "--resume {}: a --local_data run cannot be resumed yet (its workers' own files fix the "
        "schedule as they join, and it writes no checkpoints); start it afresh",
        out.resume));
  }
  const JobSpec& given = out.spec;
  auto given_flag = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (given_flag("--working_ports")) job.working_ports = given.working_ports;
  if (given_flag("--join_timeout")) job.join_timeout = given.join_timeout;
  if (given_flag("--io_timeout")) job.io_timeout = given.io_timeout;
  if (given_flag("--threads")) job.threads = given.threads;
  if (given_flag("--busy_poll_us")) job.busy_poll_us = given.busy_poll_us;
  if (given_flag("--checkpoint_every")) job.checkpoint_every = given.checkpoint_every;
  job.output = out.resume;
  out.spec = job;
}

// --cluster F: node_count, working_ports and passphrase_file come from the file; a flag that
// says otherwise is refused (a --config's values cannot be told from the defaults and give way).
void apply_cluster(const CLI::App& app, ServerOptions& out) {
  if (out.sim.enabled) {
    throw ConfigError(fmt::format(
        "--cluster {} with --simulate: the cluster file names real hosts, the simulator runs "
        "every worker in this process; give --node_count instead",
        out.cluster));
  }
  const ClusterFile c = read_cluster_file(out.cluster);
  auto given = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (given("--node_count") && out.spec.node_count != c.slots) {
    throw ConfigError(fmt::format("--node_count {} but the cluster file {} has {} worker slots",
                                  out.spec.node_count, out.cluster, c.slots));
  }
  if (given("--working_ports") && out.spec.working_ports != std::vector<int>{c.port}) {
    throw ConfigError(fmt::format("--working_ports {} but the cluster file {} says port {}",
                                  fmt::join(out.spec.working_ports, ","), out.cluster, c.port));
  }
  out.spec.node_count = c.slots;
  out.spec.working_ports = {c.port};
  if (out.passphrase_file.empty()) out.passphrase_file = c.passphrase_file;
  out.cluster_json = c.json;
  out.spec.validate();  // node_count may have changed what the job allows (gc's redundancy)
}

}  // namespace

void ServerFlags::validate() const {
  if (!(heartbeat_interval > 0) || !std::isfinite(heartbeat_interval)) {
    throw ConfigError(
        fmt::format("--heartbeat_interval {}: must be positive seconds", heartbeat_interval));
  }
  // Any positive pair works: --dead_after is this server's patience and --heartbeat_interval how
  // often it speaks, and each end of a link beats within the other's patience
  // (network/liveness.h), so neither bounds the other.
  if (!(dead_after > 0) || !std::isfinite(dead_after)) {
    throw ConfigError(
        fmt::format("--dead_after {}: must be positive seconds (default 10)", dead_after));
  }
  if (shared_memory != "on" && shared_memory != "off") {
    throw ConfigError(fmt::format("--shared_memory {}: choose on or off", shared_memory));
  }
  if (crash_after_checkpoints < 0) {
    throw ConfigError(
        fmt::format("--crash_after_checkpoints {}: must not be negative", crash_after_checkpoints));
  }
}

std::string join_command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    if (i) s += ' ';
    s += argv[i];
  }
  return s;
}

int parse_server_args(int argc, char** argv, ServerOptions& out) {
  out.command_line = join_command_line(argc, argv);
  const std::string config = find_config_arg(argc, argv);
  if (!config.empty()) {
    try {
      load_config(config, out);
    } catch (const ConfigError& e) {
      std::cerr << "init_server: " << e.what() << "\n";
      return 2;
    }
  }
  CLI::App app{
      "psgd parameter server and orchestrator.\n"
      "Waits for --node_count workers ('client --ip HOST --port PORT'), sends each its job and\n"
      "data blocks, trains, evaluates on the test set every epoch and writes a run directory\n"
      "(config.json, metrics.csv, workers.csv, summary.json, model.pt, state_dict.pt).\n"
      "With --simulate it runs the same job in this process on a virtual clock instead.\n"
      "Every flag may also be a key of a --config JSON file; flags given as well win.",
      "init_server"};
  app.option_defaults()->always_capture_default();
  app.get_formatter()->column_width(34);
  app.add_option("--config", out.config_file,
                 "JSON file with any of these options as keys (config.json's \"job\" object is "
                 "one); flags given too win");
  app.add_flag("--check", out.check,
               "Check the flags (and --config) exactly as a run would, print the job they make as "
               "JSON on stdout ({\"job\": {...}, \"server\": {...}, \"simulate\": ..., "
               "\"simulation\": {...}}) and exit: 0 when it would "
               "start, 2 with the reason when not. Loads no data and listens on no port");
  bind_fields(app, out.spec, "Job (the same in every driver; keys of config.json's \"job\")");
  bind_fields(app, static_cast<ServerFlags&>(out), "This server");
  bind_fields(app, out.sim, "Simulation (every node in this process, on a virtual clock)");
  try {
    app.parse(argc, argv);
    if (!out.resume.empty()) resume_job(app, app.get_option("--resume"), out);
    out.notes = out.spec.canonicalize();
    out.spec.validate();
    out.ServerFlags::validate();
    if (out.shared_memory == "off" && out.spec.psgd == "allreduce" &&
        out.spec.allreduce_backend == "shm") {
      throw ConfigError(
          "--shared_memory off with --allreduce_backend shm: the workers would still sum their "
          "gradients in shared memory; use --allreduce_backend ring, or drop --shared_memory off");
    }
    out.sim.validate();
    if (out.sim.enabled) check_simulatable(out);  // what the simulator cannot honour, refused
    if (!out.network_file.empty()) out.network = read_network_file(out.network_file);
    if (!out.cluster.empty()) apply_cluster(app, out);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    report(app, e);
    return 2;
  } catch (const ConfigError& e) {
    std::cerr << "init_server: " << e.what() << "\n";
    return 2;
  }
  return kContinue;
}

int parse_client_args(int argc, char** argv, ClientOptions& out) {
  out.command_line = join_command_line(argc, argv);
  CLI::App app{
      "psgd worker. Connects to init_server, receives the job and its data blocks, and trains\n"
      "until the server says the job is over. Exits 0 when the job completed.",
      "client"};
  app.option_defaults()->always_capture_default();
  app.get_formatter()->column_width(34);
  app.add_option("--ip", out.ip, "Address or host name of init_server");
  app.add_option("--port", out.port, "Port init_server listens on (its --working_ports)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--threads", out.threads,
                 "Torch threads (0: the server's suggestion, cores / psgd processes on this host, "
                 "the server included)")
      ->check(kNonNegative);
  app.add_option("--dataset", out.dataset,
                 "Read the data from here instead of the job's --dataset (same format); in a "
                 "--local_data job: this worker's own training file, which only it reads");
  app.add_option("--connect_timeout", out.connect_timeout,
                 "Seconds to keep trying to join: a refused connection, one reset or closed by a "
                 "server that is starting, dying or full, or a server that does not answer is "
                 "retried with a growing, jittered wait (0.1 s doubling to 2 s) until then")
      ->check(kPositive);
  app.add_option("--reconnects", out.reconnects,
                 "Times a worker whose server went away during its job redials it (each time for "
                 "up to --connect_timeout) and rejoins that job if it comes back (a server "
                 "resumed with --resume, or one that gives it its lost slot); it never joins "
                 "another job. 0: exit at once")
      ->check(kNonNegative);
  app.add_option("--slowdown", out.slowdown,
                 "Make this worker a straggler, as if its machine were F times slower: after "
                 "each batch it sleeps (F-1) x the batch's compute time (its CPU time, at most "
                 "its wall time, so waiting for a core on a shared host is not stretched), "
                 "leaving the cores to the other workers (1: no slowdown; recorded in the run's "
                 "config.json)")
      ->check(CLI::Range(1.0, 1000.0));
  app.add_option("--passphrase_file", out.passphrase_file,
                 "Prove the job's passphrase, from this file's first line (- : the first line of "
                 "standard input, as the launchers pass it over ssh; else $PSGD_PASSPHRASE; "
                 "never printed or sent)");
  app.add_option("--heartbeat_interval", out.heartbeat_interval,
                 "Send a heartbeat to the server on a link idle for this many seconds; shortened "
                 "(and said in one line) to a third of the server's --dead_after when that is "
                 "less, so that an idle worker is never taken for a dead one")
      ->check(kPositive);
  app.add_option("--dead_after", out.dead_after,
                 "The server silent this many seconds is lost (until training starts, the job's "
                 "--io_timeout at least: the server may be busy); the client then redials it "
                 "(see --reconnects). The server is told, and sends its heartbeats to this "
                 "worker at least three times within it")
      ->check(kPositive);
  app.add_option("--shared_memory", out.shared_memory,
                 "on: when the server runs on this machine and offers it, exchange large frames "
                 "through shared memory instead of loopback TCP. off: TCP only (default on)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_flag("--serve", out.serve,
               "Stay up as a resident worker: after a job ends (completed or not) wait for the "
               "next job from a server at --ip:--port, dialling about every 2 s, with the same "
               "passphrase and the same rules for a job's identity; SIGTERM or SIGINT stops it "
               "(exit 0 between jobs, 128 + the signal during one)");
  app.add_option("--serve_timeout", out.serve_timeout,
                 "With --serve: seconds to wait for the next job before exiting with 0 (0: wait "
                 "until stopped by a signal)")
      ->check(kNonNegative);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    report(app, e,
           "a client takes its job from init_server: the job's flags, such as --epochs or "
           "--psgd, go to init_server");
    return 2;
  }
  if (out.serve_timeout > 0 && !out.serve) {
    fmt::print(stderr,
               "client: --serve_timeout is the wait between jobs of a resident worker; give "
               "--serve too (a one-job client waits --connect_timeout)\n");
    return 2;
  }
  return kContinue;
}

}  // namespace psgd
