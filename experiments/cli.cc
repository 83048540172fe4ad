#include "experiments/cli.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>

#include "core/error.h"

namespace psgd {
namespace {

std::string choices(const std::vector<std::string>& v) {
  return fmt::format("{}", fmt::join(v, "|"));
}

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

JobSpec load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--config {}: cannot open the file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("--config {}: not valid JSON: {}", path, e.what()));
  }
  JobSpec spec;
  try {
    from_json(j, spec);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("--config {}: {}", path, e.what()));
  }
  return spec;
}

void report(const CLI::App& app, const CLI::ParseError& e) {
  // One clear line for the error, then where to look for help.
  std::cerr << app.get_name() << ": " << e.what() << "\n"
            << "Run '" << app.get_name() << " --help' to see every option and its default.\n";
}

// init_server --simulate: every flag but --simulate needs --simulate.
void add_simulation_flags(CLI::App& app, SimOptions& sim) {
  const std::string group = "Simulation (every node in this process, on a virtual clock)";
  auto* simulate =
      app.add_flag("--simulate", sim.enabled,
                   "Run the server and node_count workers in this process on a virtual clock "
                   "with a network model instead of waiting for clients")
          ->group(group);
  auto add = [&](const char* name, std::string& value, const std::string& help) {
    app.add_option(name, value, help)->group(group)->needs(simulate);
  };
  add("--sim_compute", sim.compute,
      "Time of a worker step: measured (thread CPU time of the real step) or fixed:SECONDS "
      "(modelled; the real step still runs)");
  add("--net_bandwidth", sim.net_bandwidth, "Bandwidth of every worker's link: bps|Kbps|Mbps|Gbps");
  add("--net_latency", sim.net_latency, "One-way latency per message: s|ms|us|ns");
  add("--net_jitter", sim.net_jitter, "Extra one-way delay, uniform in [0, jitter), seeded");
  add("--server_bandwidth", sim.server_bandwidth,
      "Bandwidth of the server's NIC, shared by all workers (default: --net_bandwidth)");
  add("--stragglers", sim.stragglers, "Slow workers: WORKER:xFACTOR,... e.g. \"2:x4,5:x2\"");
  add("--straggler_dist", sim.straggler_dist,
      "Extra delay of every step of every worker: exp:MEAN (seconds, seeded)");
  add("--fail", sim.fail, "Failing workers: WORKER@SECONDS,... e.g. \"3@12.5\" (virtual time)");
}

// --resume RUN_DIR: the job is the one in RUN_DIR/config.json. Flags that only say where and how
// this server runs may be given; any other would change the job and is refused.
void resume_job(const CLI::App& app, const CLI::Option* resume, ServerOptions& out) {
  static const std::vector<std::string> allowed{
      "--working_ports",   "--port_file",          "--bind",
      "--passphrase_file", "--heartbeat_interval", "--dead_after",
      "--shared_memory",   "--join_timeout",       "--io_timeout",
      "--threads",         "--checkpoint_every",   "--crash_after_checkpoints"};
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
  const JobSpec& given = out.spec;
  auto given_flag = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (given_flag("--working_ports")) job.working_ports = given.working_ports;
  if (given_flag("--join_timeout")) job.join_timeout = given.join_timeout;
  if (given_flag("--io_timeout")) job.io_timeout = given.io_timeout;
  if (given_flag("--threads")) job.threads = given.threads;
  if (given_flag("--checkpoint_every")) job.checkpoint_every = given.checkpoint_every;
  job.output = out.resume;
  out.spec = job;
}

}  // namespace

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
      out.spec = load_config(config);
    } catch (const ConfigError& e) {
      std::cerr << "init_server: " << e.what() << "\n";
      return 2;
    }
  }
  JobSpec& s = out.spec;
  CLI::App app{
      "psgd parameter server and orchestrator.\n"
      "Waits for --node_count workers ('client --ip HOST --port PORT'), sends each its job and\n"
      "data blocks, trains, evaluates on the test set every epoch and writes a run directory\n"
      "(config.json, metrics.csv, workers.csv, summary.json, model.pt, state_dict.pt).",
      "init_server"};
  app.option_defaults()->always_capture_default();
  app.get_formatter()->column_width(34);

  app.add_option("--config", out.config_file,
                 "JSON file with any of these options as keys; flags given too win");
  app.add_option("--node_count", s.node_count, "Number of workers (client processes) to wait for")
      ->check(CLI::Range(1, 1024));
  app.add_option("--batch_size", s.batch_size,
                 "Samples per worker per iteration (the global batch is node_count x batch_size)")
      ->check(CLI::PositiveNumber);
  app.add_option("--redundancy", s.redundancy,
                 "Workers holding each data block (1: a plain split; r>1: one block per r-subset; "
                 "gc / ndc: fractional repetition, r must divide node_count; ccdc: 1 <= r < "
                 "node_count)");
  app.add_option("--codec", s.codec,
                 "Gradient codec, worker to server: " + choices(known_codecs()) +
                     " (gc / ndc: gradient coding, ssgd only; ccdc: coded multicast between the "
                     "workers with --psgd broadcast and --redundancy r, each worker computing its "
                     "r-subset blocks and exchanging XOR-coded slices, see README)");
  app.add_option("--codec_levels", s.codec_levels,
                 "qsgd: quantisation levels s (1..32767; b = ceil(log2(s+1))+1 bits per element)");
  app.add_option(
      "--codec_ratio", s.codec_ratio,
      "topk / randk: fraction of coordinates kept, in (0, 1]; k = max(1, round(ratio n))");
  app.add_option(
      "--codec_bucket", s.codec_bucket,
      "qsgd, sign: elements sharing one norm / scale, as QSGD's buckets; 0: the whole gradient; "
      "default -1 = the codec's own default: 512 for qsgd (as in the QSGD paper), 0 for sign "
      "(with error feedback, per-bucket sign scales train worse; see codecs/sign.h)");
  app.add_option("--codec_scope", s.codec_scope,
                 "topk: choose the kept coordinates per tensor (tensor: each layer's weight and "
                 "bias get a share of the budget proportional to their size, as DGC) or over the "
                 "whole flat gradient (global)");
  app.add_option("--codec_warmup_epochs", s.codec_warmup_epochs,
                 "topk: sparsity warm-up (DGC): the kept fraction decays exponentially from "
                 "--codec_warmup_ratio to --codec_ratio over this many epochs (0: none)");
  app.add_option("--codec_warmup_ratio", s.codec_warmup_ratio,
                 "topk: the kept fraction at the start of the warm-up, in (0, 1]");
  app.add_option("--error_feedback", s.error_feedback,
                 "Error feedback around the codec: auto (on for sign, topk, randk) | on | off");
  app.add_option("--momentum_at", s.momentum_at,
                 "Where --momentum applies: server (its SGD) | worker (momentum correction before "
                 "the codec, as DGC; server SGD without momentum) | auto (worker for asgd and ssp, "
                 "whose server applies one stale gradient per update, and when error feedback is "
                 "on, except local_sgd; server otherwise)");
  app.add_option("--server_codec", s.server_codec,
                 "Codec of the parameters, server to worker: " + choices(known_server_codecs()));
  app.add_option(
      "--psgd", s.psgd,
      "Synchronisation strategy: " + choices(known_strategies()) +
          " (ssgd: synchronous rounds; asgd: asynchronous; ssp: bounded staleness; "
          "local_sgd: model averaging every --sync_period steps; allreduce: workers average "
          "gradients among themselves, no parameter server; broadcast: every worker sends its "
          "encoded gradient to every other)");
  app.add_option("--allreduce_backend", s.allreduce_backend,
                 "allreduce: ring (ours, over peer TCP links) | gloo (c10d ProcessGroupGloo)");
  app.add_option("--learn_rate", s.learn_rate, "SGD learning rate of the server's optimiser");
  app.add_option("--epochs", s.epochs, "Passes over the training set");
  app.add_option("--working_ports", s.working_ports,
                 "TCP port(s) to listen on; 0 picks a free port (see --port_file)")
      ->delimiter(',');
  app.add_option(
      "--block_assignment", s.block_assignment,
      "How training samples are split into blocks: " + choices(known_block_assignments()) +
          " (non-iid needs --dirichlet_alpha or --shards_per_node)");
  app.add_option(
      "--model", s.model,
      "Model: " + choices(known_models()) +
          " (mlp: C*H*W-256-classes; cnn: two conv+pool, two dense; resnet8: a small residual "
          "network for 3x32x32; autoencoder: MLP 128-32-128, needs --target xx)");
  app.add_option("--dataset", s.dataset,
                 "fashion-mnist (Debian's dataset-fashion-mnist) | mnist:DIR | idx:DIR "
                 "(a directory of the four IDX files, .gz or raw) | cifar10:DIR (binary batches) "
                 "| csv:FILE | csv:X.csv,Y.csv | npy:X.npy,Y.npy | npz:FILE (x, y[, x_test, "
                 "y_test]); without a test set every 5th sample is held out as one");
  app.add_option("--label_column", s.label_column,
                 "csv:FILE: the label column, by header name or 0-based index (default: the last; "
                 "none: no labels)");
  app.add_option(
      "--normalize", s.normalize,
      "Feature normaliser, statistics from the training set only: " + choices(known_normalizers()) +
          " (none keeps values as read; 8-bit images are read as pixel/255)");
  app.add_option("--target", s.target,
                 "xy: classify (cross-entropy, accuracy); xx: reconstruct the input (mean "
                 "squared error; accuracy is n/a)");
  app.add_option("--validation_split", s.validation_split,
                 "Fraction of the training set held out (per seed) and evaluated every epoch");
  app.add_flag("--ship_data", s.ship_data,
               "Send each worker its samples (compressed, chunked, checksummed) instead of "
               "having it read the dataset; skipped for a worker holding the same data");
  app.add_option("--momentum", s.momentum, "SGD momentum (torch.optim.SGD semantics)");
  app.add_option("--weight_decay", s.weight_decay, "L2 weight decay");
  app.add_flag("--nesterov", s.nesterov, "Nesterov momentum");
  app.add_option("--train_samples", s.train_samples,
                 "Use only the first N training samples (0: all); for quick experiments");
  app.add_option("--test_samples", s.test_samples, "Evaluate on the first N test samples (0: all)");
  app.add_option("--seed", s.seed, "Seed of model initialisation, data placement and batch order");
  app.add_option("--device", s.device, "auto | cpu | cuda; auto uses CUDA when available");
  app.add_option("--output", s.output,
                 "Run directory (default: runs/<timestamp>-<psgd>-<codec>-n<nodes>)");
  app.add_option("--threads", s.threads,
                 "Torch threads per worker (0: that host's cores / psgd processes on it, this "
                 "server included)");
  app.add_option("--join_timeout", s.join_timeout,
                 "Seconds to wait for all workers to join and load their data");
  app.add_option("--io_timeout", s.io_timeout,
                 "Seconds any single wait for a peer may last before the peer counts as dead");
  app.add_option("--checkpoint_every", s.checkpoint_every,
                 "Write <run dir>/checkpoint.bin every N iterations (ssgd: rounds) and at every "
                 "epoch end, so that a crashed server can be restarted with --resume (0: no "
                 "checkpoints; ssgd only). Each write replaces the last one atomically")
      ->check(CLI::NonNegativeNumber);
  auto* resume = app.add_option(
      "--resume", out.resume,
      "Continue the run in RUN_DIR from its last checkpoint: the job is read from "
      "RUN_DIR/config.json (flags that would change it are refused), workers connect as usual, "
      "and metrics, workers.csv and summary.json continue in RUN_DIR");
  app.add_option("--crash_after_checkpoints", out.crash_after_checkpoints,
                 "Testing aid: kill this server with SIGKILL right after its N-th checkpoint "
                 "(0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--wait_for", s.wait_for,
                 "ssgd: close each round with the first k gradients (backup workers, Chen et al. "
                 "2016); late ones are dropped and their worker resynchronised (0: all workers)");
  app.add_option("--staleness", s.staleness,
                 "ssp: iterations a worker may run ahead of the slowest before it waits "
                 "(-1: the default, 2; 0 is lock-step like ssgd)");
  app.add_flag("--staleness_lr", s.staleness_lr,
               "asgd, ssp: staleness-aware rate (Zhang et al. 2016): weight each gradient "
               "1/max(node_count, staleness + 1) instead of 1/node_count, so a gradient staler "
               "than node_count workers taking turns give (a slow worker's) counts less (default "
               "off; it did not make asgd's accuracy steadier, see bench/README.md)");
  app.add_option("--delay_compensation", s.delay_compensation,
                 "asgd: delay-compensated ASGD (DC-ASGD, Zheng et al. ICML 2017). A worker's "
                 "gradient g was computed on the parameters it was sent, w_stale, but is applied "
                 "to the current ones, w; the server applies g + lambda * g*g*(w - w_stale) "
                 "instead (elementwise: a first-order Taylor correction with the Hessian's "
                 "diagonal approximated by g*g). With worker-side momentum each gradient is "
                 "corrected once and the correction carried through that worker's momentum. "
                 "This flag is lambda (0: off, the default); see --delay_compensation_mode for "
                 "its scale (the paper: 2 adaptive, 0.04 constant). Try it when asgd's accuracy "
                 "trails ssgd's because of stale gradients; the server keeps ~3 model copies "
                 "per worker. Measured on the MLP / Fashion-MNIST check it did not make asgd's "
                 "accuracy reliable (bench/README.md)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--delay_compensation_mode", s.delay_compensation_mode,
                 "asgd with --delay_compensation: adaptive (default, DC-ASGD-a, the paper's "
                 "recommendation: lambda is divided per coordinate by the root of a moving "
                 "average of g*g, so it does not depend on the gradient's scale) or constant "
                 "(DC-ASGD-c: lambda as given)");
  app.add_option("--model_average", s.model_average,
                 "ssgd, asgd, ssp, local_sgd: the model evaluated at each epoch end and saved "
                 "(model.pt): off (the last iterate) or ema:BETA, an exponential moving average "
                 "of the server's parameters over its iterations, bias-corrected (BETA 0.99: "
                 "the last ~100 iterations); auto: the strategy's default. summary.json "
                 "evaluated_model says which, and final_iterate_test_accuracy gives the last "
                 "iterate's accuracy too");
  app.add_option("--sync_period", s.sync_period,
                 "local_sgd: local optimiser steps between model averages, H (0: the default, "
                 "4; 1 is ssgd's trajectory)");
  app.add_option("--local_after_epochs", s.local_after_epochs,
                 "local_sgd: run the first E epochs with H = 1, then H = --sync_period "
                 "(post-local SGD, Lin et al. 2020)");
  app.add_option("--delay", s.delay,
                 "Extra time each worker pauses after every batch, seeded per worker: none | "
                 "fixed:SECONDS | exp:MEAN_SECONDS | uniform:LOW:HIGH");
  app.add_option("--dirichlet_alpha", s.dirichlet_alpha,
                 "non-iid: per-class Dirichlet(alpha) proportions over blocks (0.1: few classes "
                 "per worker; 100: nearly iid; 0: not used)");
  app.add_option("--shards_per_node", s.shards_per_node,
                 "non-iid: deal label-sorted shards, S per block (per worker with --redundancy "
                 "1; 0: not used)");
  app.add_option("--bind", out.bind,
                 "Address to listen on (0.0.0.0: every interface; default 127.0.0.1 without a "
                 "passphrase, 0.0.0.0 with one)");
  app.add_option("--passphrase_file", out.passphrase_file,
                 "Authenticate workers with the passphrase on this file's first line (else "
                 "$PSGD_PASSPHRASE; never printed or sent)");
  app.add_option("--heartbeat_interval", out.heartbeat_interval,
                 "Send a heartbeat on a link idle for this many seconds")
      ->check(CLI::PositiveNumber);
  app.add_option("--dead_after", out.dead_after,
                 "A training worker silent this many seconds is lost; the strategy decides "
                 "whether the run goes on")
      ->check(CLI::PositiveNumber);
  app.add_option("--shared_memory", out.shared_memory,
                 "on: workers on this machine exchange large frames (gradients, parameters) "
                 "with the server through shared memory instead of copying them through "
                 "loopback TCP; results are identical, only faster. off: TCP only (default on)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--port_file", out.port_file,
                 "Write the port actually listened on to this file (useful with port 0)");
  app.add_flag("--timeline", out.timeline,
               "Write timeline.json (Chrome trace of per-worker phases and server rounds) to "
               "the run directory");
  app.add_flag("--tensorboard", out.tensorboard,
               "Write TensorBoard scalars (loss, accuracy, bytes, time split per epoch) under "
               "<run dir>/tensorboard/");
  app.add_flag("--check", out.check,
               "Check the flags (and --config) exactly as a run would, print the job they make as "
               "JSON on stdout ({\"job\": {...}, \"simulate\": ...}) and exit: 0 when it would "
               "start, 2 with the reason when not. Loads no data and listens on no port");
  add_simulation_flags(app, out.sim);
  try {
    app.parse(argc, argv);
    if (!out.resume.empty()) resume_job(app, resume, out);
    s.validate();
    if (out.sim.enabled) cluster_options(out.sim, s.node_count, s.seed);  // checks the flags
    if (out.sim.enabled && (s.checkpoint_every > 0 || !out.resume.empty())) {
      throw ConfigError("--checkpoint_every / --resume: not with --simulate (real runs only)");
    }
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
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dataset", out.dataset,
                 "Read the data from here instead of the job's --dataset (same format)");
  app.add_option("--connect_timeout", out.connect_timeout,
                 "Seconds to keep retrying while the server is not reachable")
      ->check(CLI::PositiveNumber);
  app.add_option("--slowdown", out.slowdown,
                 "Make this worker a straggler, as if its machine were F times slower: after "
                 "each batch it sleeps (F-1) x the batch's compute time (its CPU time, at most "
                 "its wall time, so waiting for a core on a shared host is not stretched), "
                 "leaving the cores to the other workers (1: no slowdown; recorded in the run's "
                 "config.json)")
      ->check(CLI::Range(1.0, 1000.0));
  app.add_option("--passphrase_file", out.passphrase_file,
                 "Prove the job's passphrase, from this file's first line (else $PSGD_PASSPHRASE; "
                 "never printed or sent)");
  app.add_option("--heartbeat_interval", out.heartbeat_interval,
                 "Send a heartbeat on a link idle for this many seconds")
      ->check(CLI::PositiveNumber);
  app.add_option("--dead_after", out.dead_after,
                 "Once training, the server silent this many seconds is lost (the client then "
                 "retries the connection until --connect_timeout)")
      ->check(CLI::PositiveNumber);
  app.add_option("--shared_memory", out.shared_memory,
                 "on: when the server runs on this machine and offers it, exchange large frames "
                 "through shared memory instead of loopback TCP. off: TCP only (default on)")
      ->check(CLI::IsMember({"on", "off"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    report(app, e);
    return 2;
  }
  return kContinue;
}

}  // namespace psgd
