#pragma once
// client: one worker of a real (TCP) run. Connects (retrying while the server starts), says
// Hello, receives its Job, loads its data blocks, builds the model, then runs the strategy's
// WorkerRole until the server sends Finish.
#include "experiments/cli.h"

namespace psgd {

// Returns the process exit code: 0 when the job completed, 1 otherwise, 130 when interrupted.
int run_client(const ClientOptions& options);

}  // namespace psgd
