#pragma once
// init_server: the parameter server and orchestrator of a real (TCP) run.
//
// Phases: joining (accept node_count workers, each authenticates and says Hello) -> loading (each
// is sent its Job and data blocks, loads data, answers Ready; peer-to-peer strategies then link
// up) -> training (the strategy's ServerRole drives the rounds; the server evaluates on the test
// set at every epoch end) -> done (run directory completed, then Finish with the final status to
// every worker). Heartbeats go both ways from the join on. Any worker lost during loading or
// training (dead, silent for --dead_after, or leaving on a signal) ends the run with a status that
// says which worker and why, unless the strategy carries on without it; SIGTERM or SIGINT ends
// it as "interrupted" (after a last checkpoint when it checkpoints); every wait has a timeout.
//
// The parts (experiments/server/): the socket-free handshake (network/handshake.h), the
// membership (worker_table.h), the checkpoints (checkpointer.h), the data shipper
// (experiments/data_shipping.h), the job plan (experiments/job_plan.h) and the thin TCP driver
// that joins them (driver.h, driver.cc for joining and loading, training.cc for training and its
// faults, ending.cc for the end of the run).
#include "experiments/cli.h"

namespace psgd {

// Returns the process exit code: 0 completed, 1 failed, 2 bad configuration, 128 + signal when
// interrupted. May run on any thread (tests run whole jobs in one process).
int run_server(const ServerOptions& options);

}  // namespace psgd
