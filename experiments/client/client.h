#pragma once
// client: one worker of a real (TCP) run. Connects (retrying while the server starts), runs the
// handshake (network/handshake.h), receives its Job, gets its data (worker_data.h), builds its
// worker from the Job exactly as --simulate builds its workers (experiments/worker_setup.h), then
// runs the strategy's WorkerRole until the server sends Finish. The driver is driver.cc.
#include "experiments/cli.h"

namespace psgd {

// Returns the process exit code: 0 when the job completed, 1 otherwise, 2 for bad flags,
// 128 + signal when interrupted. May run on any thread (tests run whole jobs in one process).
int run_client(const ClientOptions& options);

}  // namespace psgd
