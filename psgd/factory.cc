#include "psgd/factory.h"

#include "core/error.h"
#include "psgd/ssgd.h"

namespace psgd {

SgdOptions sgd_options(const JobSpec& spec) {
  return SgdOptions{.learning_rate = static_cast<float>(spec.learn_rate),
                    .momentum = static_cast<float>(spec.momentum),
                    .weight_decay = static_cast<float>(spec.weight_decay),
                    .nesterov = spec.nesterov};
}

std::unique_ptr<ServerRole> make_server_role(const JobSpec& spec, const Schedule& schedule,
                                             ServerContext context) {
  if (spec.psgd == "ssgd") return std::make_unique<SsgdServer>(schedule, context);
  throw ConfigError(fmt::format("--psgd {}: no server role for this strategy", spec.psgd));
}

std::unique_ptr<WorkerRole> make_worker_role(const JobSpec& spec, WorkerContext context) {
  if (spec.psgd == "ssgd") return std::make_unique<SsgdWorker>(context);
  throw ConfigError(fmt::format("--psgd {}: no worker role for this strategy", spec.psgd));
}

}  // namespace psgd
