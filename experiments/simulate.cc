#include "experiments/simulate.h"

#include <fmt/format.h>

#include <fstream>
#include <memory>
#include <sstream>

#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "experiments/divergence.h"
#include "experiments/format.h"
#include "experiments/job_plan.h"
#include "experiments/provenance.h"
#include "experiments/recorder.h"
#include "experiments/run_dir.h"
#include "experiments/sim_cluster.h"
#include "experiments/sim_options.h"
#include "experiments/strategy_events.h"
#include "experiments/tensorboard.h"
#include "experiments/timeline.h"
#include "experiments/worker_results.h"
#include "experiments/worker_setup.h"
#include "nn/data_source.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "psgd/checkpoint.h"
#include "psgd/factory.h"

namespace psgd {

std::uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      std::uint64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

namespace {

int simulate(const ServerOptions& options) {
  const JobSpec& spec = options.spec;
  const int n = spec.node_count;
  SimClusterOptions cluster_opts = cluster_options(options.sim, n, spec.seed);
  SteadyClock wall;
  // Measured compute reads this thread's CPU time, which only covers torch's work on one thread.
  nn::set_compute_threads(1);
  nn::keep_freed_memory();

  for (const std::string& note : options.notes)
    fmt::print("init_server: {}\n", note);
  if (!spec.output.empty()) RunDirectory::check_new(spec.output);  // before loading any data
  const JobPlan plan(spec);
  for (const std::string& note : plan.notes())
    fmt::print("init_server: note: {}\n", note);
  fmt::print("init_server: {}\ninit_server: {}\n", nn::describe(*plan.train()),
             nn::describe(plan.evaluation()->test));
  if (!plan.holdout().validation.empty()) {
    fmt::print("init_server: {} (held out of the training set)\n",
               nn::describe(plan.evaluation()->validation));
  }
  std::unique_ptr<nn::Trainer> model = plan.make_model();
  for (const std::string& note : plan.model_notes(*model))
    fmt::print("init_server: note: {}\n", note);
  const Schedule& schedule = plan.schedule();
  fmt::print(
      "init_server: simulating {} workers: {}; {} {} with codec {}, batch {}, {} iterations per "
      "epoch; network {} / {} latency, compute {}\n",
      n, model->describe(), spec.psgd, spec.block_assignment, spec.codec, spec.batch_size,
      schedule.iterations_per_epoch, options.sim.net_bandwidth, options.sim.net_latency,
      options.sim.compute);
  std::fflush(stdout);

  // The workers read the training set as the plan normalises it, as a client does its samples.
  auto worker_data = std::make_shared<nn::DataSplit>();
  worker_data->train = *plan.train();
  plan.normalizer().apply(worker_data->train);
  std::shared_ptr<const nn::DataSplit> shared_data = worker_data;

  SimCluster cluster(cluster_opts);
  std::vector<std::unique_ptr<WorkerParts>> workers;
  std::vector<WorkerRole*> role_ptrs;
  // Each simulated worker's log and trace, as a client streams them (experiments/worker_results.h)
  // and within the same limits; written to workers/<id>/ at the end.
  std::vector<WorkerLogOutbox> outboxes(static_cast<std::size_t>(n));
  for (int w = 0; w < n; ++w) {
    const WorkerSetup setup = plan.worker(w);
    sim::NodeClock& clock = cluster.worker_clock(w);
    WorkerLogOutbox& outbox = outboxes[static_cast<std::size_t>(w)];
    workers.push_back(std::make_unique<WorkerParts>(
        spec, schedule, setup, shared_data, setup.samples,
        WorkerEnv{.clock = &clock,
                  .pause = [&clock](double s) { clock.advance(s); },
                  .wrap = [&cluster, w](Learner* l) { return cluster.timed_learner(w, l); },
                  .trace = [&outbox](const TraceRow& row) { outbox.row(row); },
                  .traffic = [&cluster, w] { return cluster.worker_traffic(w); }}));
    role_ptrs.push_back(&workers.back()->role());
    outbox.log(fmt::format("0.000 sim[{}]: simulated worker {} of {}: {} samples, {}, {} {}", w, w,
                           n, setup.samples.size(), workers.back()->trainer().describe(), spec.psgd,
                           spec.codec));
  }

  const std::string dir = spec.output.empty() ? default_run_dir(spec) : spec.output;
  RunDirectory run(dir);
  RecorderSetup setup{.spec = &spec,
                      .schedule = schedule,
                      .dir = &run,
                      .model = model.get(),
                      .wall = &wall,
                      .virtual_clock = &cluster.server_clock(),
                      .traffic =
                          [&cluster](int w) {
                            return Traffic{.up = cluster.bytes_up(w),
                                           .down = cluster.bytes_down(w)};
                          },
                      .metrics_wall = false,
                      .average_decay = spec.model_average_decay(),
                      .save_model = [&](const std::string& tag) { model->save(run.path(), tag); }};
  RunRecorder recorder(setup);
  recorder.set_worker_hosts(std::vector<std::string>(static_cast<std::size_t>(n), "sim"));
  // --tensorboard: the same scalars as a real run's, with time/virtual_s.
  std::unique_ptr<TensorBoardWriter> tensorboard;
  if (options.tensorboard) {
    tensorboard = std::make_unique<TensorBoardWriter>(run.file("tensorboard"));
    recorder.set_epoch_listener(
        [&tensorboard](const MetricsRow& row, const std::vector<WorkerRow>& workers) {
          tensorboard->add_scalars(row.epoch, epoch_scalars(row, workers));
        });
  }
  nlohmann::json hosts = nlohmann::json::array();
  for (int w = 0; w < n; ++w) {
    hosts.push_back({{"host", "sim"},
                     {"pid", static_cast<std::int64_t>(getpid())},
                     {"psgd_revision", psgd_revision()},
                     {"slowdown", cluster_opts.slowdown.empty()
                                      ? 1.0
                                      : cluster_opts.slowdown[static_cast<std::size_t>(w)]}});
  }
  nlohmann::json config = plan.config_json(options.command_line, run.path(),
                                           model->num_parameters(), hosts, options.notes);
  config["simulation"] = sim_config_json(options.sim, n, spec.seed);
  run.write_config(config);

  // summary.json's events get what the strategy reports (a ring re-formed after --fail).
  nlohmann::json events = nlohmann::json::array();
  StrategyEventSink event_sink([&](const StrategyEvent& e) {
    events.push_back(strategy_event_json(e, schedule, plan.placement(), "virtual_s",
                                         cluster.server_clock().now()));
  });
  // --timeline: the same Chrome trace as a real run's, its times virtual seconds (the server's
  // simulated clock, the workers' simulated phase times).
  std::unique_ptr<TimelineRecorder> timeline;
  std::vector<ServerObserver*> observer_list{&recorder, &event_sink};
  if (options.timeline) {
    timeline = std::make_unique<TimelineRecorder>(
        TimelineOptions{.node_count = n, .total_iterations = schedule.total_iterations()},
        &cluster.server_clock());
    timeline->set_worker_hosts(std::vector<std::string>(static_cast<std::size_t>(n), "sim"));
    observer_list.push_back(timeline.get());
  }
  ObserverFanout observers(std::move(observer_list));
  auto server = make_server_role(spec, schedule,
                                 ServerContext{.parameters = model->parameters(),
                                               .buffers = model->buffers(),
                                               .optimizer = optimizer_spec(spec, schedule),
                                               .uplink = uplink_codec_spec(spec, 0),
                                               .downlink = downlink_codec_spec(spec),
                                               .clock = &cluster.server_clock(),
                                               .observer = &observers});
  // A simulated failure (--fail W@T) is recorded as a real run records a lost worker.
  std::vector<std::pair<int, std::string>> lost;
  cluster.on_worker_lost([&](NodeId w, double at_s, bool carried_on) {
    const std::string why = fmt::format("failed at {:g} s of virtual time (--fail)", at_s);
    events.push_back({{"event", "worker_lost"},
                      {"worker", w},
                      {"host", "sim"},
                      {"iteration", server->iteration()},
                      {"virtual_s", at_s},
                      {"why", why},
                      {"carried_on", carried_on}});
    lost.emplace_back(w, why);
  });
  // A write that fails (a full disk) ends the run as "failed: cannot write <file>: <reason>",
  // and any other failure as "failed: <reason>", as in a real run; summary.json is still
  // attempted, every file whole or absent.
  std::string status;
  bool ok = false;
  SimResult result;
  try {
    recorder.start();
    if (timeline) timeline->start();
    // A diverged run (experiments/divergence.h) stops after the update that showed it, with
    // --on_divergence stop; with continue it is said once and the run goes on.
    const bool stop_on_divergence = spec.on_divergence == "stop";
    bool divergence_said = false;
    auto check_divergence = [&] {
      const auto& d = recorder.divergence();
      if (!d || divergence_said) return false;
      divergence_said = true;
      events.push_back(announce_divergence(*d, spec, "virtual_s", cluster.server_clock().now()));
      return stop_on_divergence;
    };
    result = cluster.run(*server, role_ptrs, [&] {
      recorder.after_dispatch(server->iteration());
      if (check_divergence()) cluster.stop(divergence_status(*recorder.divergence(), spec));
    });
    status = result.status;
    ok = result.ok;
    if (!result.ok && result.status.rfind("diverged", 0) != 0)
      fmt::print(stderr, "init_server: {}\n", result.status);
    recorder.write_evaluated(/*wait=*/true);
    // An evaluation that ended after the last update (the last epoch's) can show it too.
    if (check_divergence() && ok) {
      status = divergence_status(*recorder.divergence(), spec);
      ok = false;
    }
    recorder.load_evaluated_model();  // the averaged model, if any
    model->save(run.path());
    if (timeline) timeline->write(run.file("timeline.json"));
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    // Anything else that stops the run (a model that fails on a batch it was not checked with,
    // say) ends it as failed, with the summary written, as in a real run.
    fmt::print(stderr, "init_server: {}\n", e.what());
    status = fmt::format("failed: {}", e.what());
    ok = false;
  }
  // The simulated workers' logs and traces, where a real run's workers' land.
  nlohmann::json worker_files;
  try {
    WorkerResults results(n);
    std::vector<bool> gone(static_cast<std::size_t>(n), false);
    for (const auto& [w, why] : lost) {
      results.lost(w, fmt::format("worker {} was lost: {}", w, why));
      gone[static_cast<std::size_t>(w)] = true;
    }
    // A failed worker's last piece never comes, as a dead client's does not.
    for (int w = 0; w < n; ++w)
      for (const WorkerLog& piece :
           outboxes[static_cast<std::size_t>(w)].take(/*last=*/!gone[static_cast<std::size_t>(w)]))
        results.add(w, piece);
    worker_files = results.write(run.path());
  } catch (const std::exception& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    if (ok) status = fmt::format("failed: {}", e.what());
    ok = false;
  }
  const double wall_s = wall.now();
  const std::uint64_t rss = peak_rss_bytes();
  nlohmann::json extra{{"simulation",
                        {{"virtual_seconds_total", result.virtual_s},
                         {"events", result.events},
                         {"process_wall_seconds", wall_s},
                         {"peak_rss_bytes", rss}}},
                       {"worker_files", worker_files}};
  nlohmann::json lost_workers = nlohmann::json::array();
  for (const auto& entry : lost)
    lost_workers.push_back(entry.first);
  extra["lost_workers"] = lost_workers;
  if (!events.empty()) extra["events"] = events;
  if (ok) extra["parameters_sha256"] = sha256_hex(model->parameters());
  recorder.finish(status, ok, server->iteration(), extra);  // IoError: the run's last word
  fmt::print(
      "init_server: {} after {} epochs ({} iterations): {:.6g} s of virtual time in {:.1f} s of "
      "real time, {} events, peak memory {:.0f} MB\n",
      status.rfind("diverged", 0) == 0 ? "diverged (above)" : status, recorder.epochs_done(),
      server->iteration(), result.virtual_s, wall_s, result.events, static_cast<double>(rss) / 1e6);
  fmt::print(
      "init_server: run directory {} (summary.json, metrics.csv, workers.csv, each simulated "
      "worker's log.txt and trace.csv in workers/<id>/)\n",
      run.path());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace

void check_simulatable(const ServerOptions& options) {
  const JobSpec& spec = options.spec;
  if (spec.checkpoint_every > 0 || !options.resume.empty()) {
    throw ConfigError(
        "--checkpoint_every / --resume with --simulate: a simulated run is repeated, not resumed "
        "(real runs only)");
  }
  if (spec.allreduce_backend != "ring") {
    throw ConfigError(fmt::format(
        "--allreduce_backend {} with --simulate: the simulator models our ring only (gloo and shm "
        "move their own bytes, outside any network); simulate --allreduce_backend ring",
        spec.allreduce_backend));
  }
  // --ship_data auto is honoured: every simulated worker reads this process's copy, so every
  // worker's rows match and none is shipped (summary.json shipped_workers is empty).
  if (spec.ship_data == "always") {
    throw ConfigError(
        "--ship_data always with --simulate: the simulated workers share this process's copy of "
        "the data; nothing is shipped (auto is accepted and ships nothing)");
  }
  if (spec.local_data) {
    throw ConfigError(
        "--local_data with --simulate: the simulated workers all read this process's --dataset; "
        "run local data over TCP (init_server, and one client per worker with its own --dataset)");
  }
  if (spec.busy_poll_us > 0) {
    throw ConfigError(fmt::format(
        "--busy_poll_us {} with --simulate: the simulated nodes have no sockets to poll and the "
        "virtual clock no wake-ups to save",
        spec.busy_poll_us));
  }
  // The simulated links carry no heartbeats and a --fail'ed worker is lost at its virtual time,
  // as a killed process is at once over TCP (a hung one is not modelled); nothing to checkpoint
  // on SIGTERM either. These flags would change nothing, so a value of one's own is refused.
  const ServerFlags defaults;
  if (options.heartbeat_interval != defaults.heartbeat_interval ||
      options.dead_after != defaults.dead_after) {
    throw ConfigError(fmt::format(
        "--heartbeat_interval {:g} / --dead_after {:g} with --simulate: they watch real links "
        "for silent processes; the simulator has none (a --fail'ed worker is lost at its virtual "
        "time, as a killed process is at once over TCP); leave them out",
        options.heartbeat_interval, options.dead_after));
  }
  if (!options.network_file.empty()) {
    throw ConfigError(
        "--network_file with --simulate: it describes the real network of a run over TCP; the "
        "simulator models its own (--net_bandwidth, --server_bandwidth, --net_latency)");
  }
  cluster_options(options.sim, spec.node_count, spec.seed);  // ConfigError naming the flag
}

int run_simulation(const ServerOptions& options) {
  return exit_code_of("init_server", [&] { return simulate(options); });
}

}  // namespace psgd
