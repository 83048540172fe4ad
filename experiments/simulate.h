#pragma once
// init_server --simulate: the whole job in this process, on a virtual clock (experiments/
// sim_cluster.h). Same data placement, schedule, roles, codecs and run directory as the TCP run
// of the same flags (experiments/server.h); what differs:
//   - metrics.csv has virtual_s filled and wall_s empty (so that a run with a modelled compute
//     time is byte-for-byte repeatable); summary.json has both virtual_seconds and the real
//     wall_seconds, plus a "simulation" object (events, peak memory);
//   - config.json records the simulation flags under "simulation";
//   - torch runs on one thread and every worker's learner lives here: the training data are
//     loaded once and shared, each worker holds its model replica and its own samples.
#include "experiments/cli.h"

namespace psgd {

// Returns the process exit code: 0 completed, 1 failed, 2 bad configuration.
int run_simulation(const ServerOptions& options);

// Refuses, with a ConfigError naming the flag, what the simulator cannot honour (the TCP driver
// can): checkpoints and --resume, the Gloo backend, --ship_data, and bad simulation flags. Called
// when the flags are parsed, so --check says so too.
void check_simulatable(const ServerOptions& options);

// Peak resident memory of this process in bytes (VmHWM), 0 if unknown.
std::uint64_t peak_rss_bytes();

}  // namespace psgd
