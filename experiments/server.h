#pragma once
// init_server: the parameter server and orchestrator of a real (TCP) run.
//
// Phases: joining (accept node_count workers, each says Hello) -> loading (each is sent its Job and
// data blocks, loads data, answers Ready) -> training (the strategy's ServerRole drives the rounds;
// the server evaluates on the test set at every epoch end) -> done (Finish to every worker, run
// directory completed). Any worker lost during loading or training ends the run with a status
// that says which worker and why; every wait has a timeout.
#include "experiments/cli.h"

namespace psgd {

// Returns the process exit code: 0 completed, 1 failed, 130 interrupted.
int run_server(const ServerOptions& options);

}  // namespace psgd
