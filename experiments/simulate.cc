#include "experiments/simulate.h"

#include <fmt/format.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "core/clock.h"
#include "core/error.h"
#include "core/rng.h"
#include "experiments/placement.h"
#include "experiments/recorder.h"
#include "experiments/run_dir.h"
#include "experiments/sim_cluster.h"
#include "experiments/sim_options.h"
#include "nn/data_source.h"
#include "nn/partition.h"
#include "nn/threads.h"
#include "nn/trainer.h"
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
  if (spec.psgd == "allreduce" && spec.allreduce_backend != "ring") {
    throw ConfigError(fmt::format(
        "--simulate with --allreduce_backend {}: the simulator models our ring only (Gloo moves "
        "its own bytes)",
        spec.allreduce_backend));
  }
  SimClusterOptions cluster_opts = cluster_options(options.sim, n, spec.seed);
  SteadyClock wall;
  // Measured compute reads this thread's CPU time, which only covers torch's work on one thread.
  nn::set_compute_threads(1);

  auto data = std::make_shared<const nn::DataSplit>(
      nn::load_dataset(spec.dataset, spec.train_samples, spec.test_samples));
  fmt::print("init_server: {}\ninit_server: {}\n", nn::describe(data->train),
             nn::describe(data->test));
  nn::Trainer model(nn::TrainerOptions{.model = spec.model,
                                       .target = spec.target,
                                       .batch_size = spec.batch_size,
                                       .seed = spec.seed,
                                       .device = spec.device},
                    data, std::vector<std::int64_t>{});
  const DataPlacement placed = place_data(spec, data->train);
  const nn::Placement& placement = placed.placement;
  const auto& blocks = placed.blocks;
  const Schedule schedule = make_schedule(spec, static_cast<std::int64_t>(data->train.size()));
  fmt::print(
      "init_server: simulating {} workers: {}; {} {} with codec {}, batch {}, {} iterations per "
      "epoch; network {} / {} latency, compute {}\n",
      n, model.describe(), spec.psgd, spec.block_assignment, spec.codec, spec.batch_size,
      schedule.iterations_per_epoch, options.sim.net_bandwidth, options.sim.net_latency,
      options.sim.compute);
  std::fflush(stdout);

  SimCluster cluster(cluster_opts);
  // One learner per worker: its model replica and its samples; the dataset itself is shared.
  std::vector<std::unique_ptr<nn::Trainer>> trainers;
  std::vector<std::unique_ptr<WorkerRole>> roles;
  std::vector<WorkerRole*> role_ptrs;
  for (int w = 0; w < n; ++w) {
    nn::TrainerOptions topts{.model = spec.model,
                             .target = spec.target,
                             .batch_size = spec.batch_size,
                             .seed = spec.seed,
                             .device = spec.device,
                             .batch_stream = 1000 + static_cast<std::uint64_t>(w)};  // as client.cc
    if (uses_block_streams(spec)) {  // as the Job the TCP server sends
      for (int b : placement.blocks_of_worker[static_cast<std::size_t>(w)]) {
        topts.block_ids.push_back(b);
        topts.block_sizes.push_back(
            static_cast<std::int64_t>(blocks[static_cast<std::size_t>(b)].size()));
      }
    }
    trainers.push_back(std::make_unique<nn::Trainer>(std::move(topts), data,
                                                     nn::worker_samples(placement, blocks, w)));
    roles.push_back(make_worker_role(
        spec, schedule,
        WorkerContext{.learner = cluster.timed_learner(w, trainers.back().get()),
                      .uplink = uplink_codec_spec(spec, static_cast<std::uint64_t>(w),
                                                  schedule.iterations_per_epoch,
                                                  trainers.back()->tensor_sizes()),
                      .downlink = downlink_codec_spec(spec),
                      .clock = &cluster.worker_clock(w),
                      .id = w}));
    role_ptrs.push_back(roles.back().get());
  }

  const std::string dir = spec.output.empty() ? default_run_dir(spec) : spec.output;
  RunDirectory run(dir);
  RecorderSetup setup{.spec = &spec,
                      .schedule = schedule,
                      .dir = &run,
                      .model = &model,
                      .wall = &wall,
                      .virtual_clock = &cluster.server_clock(),
                      .traffic =
                          [&cluster](int w) {
                            return Traffic{.up = cluster.bytes_up(w),
                                           .down = cluster.bytes_down(w)};
                          },
                      .metrics_wall = false,
                      .average_decay = spec.model_average_decay()};
  RunRecorder recorder(setup);
  recorder.set_worker_hosts(std::vector<std::string>(static_cast<std::size_t>(n), "sim"));
  nlohmann::json config =
      make_config(spec, options.command_line, model.num_parameters(), data->train.size(),
                  data->test.size(), blocks.size(), schedule, run.path());
  nlohmann::json workers = nlohmann::json::array();
  for (int w = 0; w < n; ++w) {
    workers.push_back({{"worker", w},
                       {"host", "sim"},
                       {"samples", trainers[static_cast<std::size_t>(w)]->num_train_samples()},
                       {"blocks", placement.blocks_of_worker[static_cast<std::size_t>(w)]}});
  }
  config["workers"] = workers;
  config["simulation"] = sim_config_json(options.sim, n, spec.seed);
  run.write_config(config);

  auto server = make_server_role(spec, schedule,
                                 ServerContext{.parameters = model.parameters(),
                                               .sgd = sgd_options(spec),
                                               .uplink = uplink_codec_spec(spec, 0),
                                               .downlink = downlink_codec_spec(spec),
                                               .clock = &cluster.server_clock(),
                                               .observer = &recorder});
  recorder.start();
  const SimResult result =
      cluster.run(*server, role_ptrs, [&] { recorder.after_dispatch(server->iteration()); });

  if (!result.ok) fmt::print(stderr, "init_server: {}\n", result.status);
  recorder.write_evaluated(/*wait=*/true);
  recorder.load_evaluated_model();  // the averaged model, if any
  model.save(run.path());
  const double wall_s = wall.now();
  const std::uint64_t rss = peak_rss_bytes();
  recorder.finish(result.status, result.ok, server->iteration(),
                  {{"simulation",
                    {{"virtual_seconds_total", result.virtual_s},
                     {"events", result.events},
                     {"process_wall_seconds", wall_s},
                     {"peak_rss_bytes", rss}}}});
  fmt::print(
      "init_server: {} after {} epochs ({} iterations): {:.6g} s of virtual time in {:.1f} s of "
      "real time, {} events, peak memory {:.0f} MB\n",
      result.status, recorder.epochs_done(), server->iteration(), result.virtual_s, wall_s,
      result.events, static_cast<double>(rss) / 1e6);
  fmt::print("init_server: run directory {} (summary.json, metrics.csv, workers.csv)\n",
             run.path());
  std::fflush(stdout);
  return result.ok ? 0 : 1;
}

}  // namespace

int run_simulation(const ServerOptions& options) {
  try {
    return simulate(options);
  } catch (const ConfigError& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    return 2;
  } catch (const Error& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    return 1;
  }
}

}  // namespace psgd
