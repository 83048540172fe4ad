#pragma once
// Builds the roles a JobSpec names (explicit factory, no registration).
#include <memory>

#include "core/job_spec.h"
#include "psgd/context.h"

namespace psgd {

std::unique_ptr<ServerRole> make_server_role(const JobSpec& spec, const Schedule& schedule,
                                             ServerContext context);
std::unique_ptr<WorkerRole> make_worker_role(const JobSpec& spec, WorkerContext context);

// The SGD options a JobSpec asks for.
SgdOptions sgd_options(const JobSpec& spec);

}  // namespace psgd
