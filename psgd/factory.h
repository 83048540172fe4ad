#pragma once
// Builds the roles a JobSpec names (explicit factory, no registration).
#include <memory>

#include "core/job_spec.h"
#include "psgd/context.h"

namespace psgd {

// The schedule of the job's strategy. An epoch is always one pass over the training set; what
// one iteration is depends on the strategy: a synchronous round of node_count batches (ssgd), one
// local step of every worker (local_sgd), or one server update of one worker's batch (asgd, ssp:
// node_count times as many iterations per epoch).
Schedule make_schedule(const JobSpec& spec, std::int64_t train_samples);

std::unique_ptr<ServerRole> make_server_role(const JobSpec& spec, const Schedule& schedule,
                                             ServerContext context);
std::unique_ptr<WorkerRole> make_worker_role(const JobSpec& spec, const Schedule& schedule,
                                             WorkerContext context);

// The SGD options a JobSpec asks for.
SgdOptions sgd_options(const JobSpec& spec);

}  // namespace psgd
