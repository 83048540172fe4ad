#pragma once
// Every random stream of a job, named in one place.
//
// The determinism promise: a job is a pure function of its flags and --seed. Everything random in
// it draws from psgd::Rng (core/rng.h) seeded by derive_seed(--seed, STREAM) with one of the
// streams below, in every driver alike (init_server and its clients, --simulate, tests), so
// that the same job places the same samples on the same workers, initialises the same model,
// draws the same batches and compresses with the same randomness wherever it runs. What remains
// nondeterministic is named here too, so that it can be read what a repeat of a run may change.
//
//   --seed itself         the initial model (torch::manual_seed; nn/trainer.cc)
//   kPlacement            which samples form each block (experiments/placement.cc)
//   kValidation           which training rows are held out (experiments/job_plan.cc)
//   batch_order(worker)   a worker's batch order: its batch stream, into which the Trainer mixes
//                         its own "batch" tag (nn/trainer.cc)
//   block_order(block)    a block's batch order for gc, ndc and ccdc: every worker holding the
//                         block draws alike (nn/trainer.cc)
//   worker_delay(worker)  --delay's draws on that worker (core/straggler.h)
//   codec(sender)         qsgd's stochastic rounding, randk's indices (codecs/factory.cc)
//   kPowerSgd             PowerSGD's first Q, the same on every worker (psgd/powersgd.h)
//   sim_straggler(worker) --straggler_dist's extra delays in the simulator
//                         (experiments/sim_cluster.cc)
//   kSimJitter            --net_jitter in the simulator (network/sim/network_model.cc)
//   kSimShare             --net_unfairness: each transfer's share of a link in the simulator
//                         (network/sim/network_model.cc)
//
// Not seeded, and therefore not repeatable: the arrival order of messages in a real run (asgd,
// ssp and --wait_for depend on it; ssgd, local_sgd, allreduce and broadcast do not), and the
// timing columns. The simulator with --sim_compute fixed:S is repeatable event for event.
//
// The numeric values are part of the promise: changing one changes every run of that kind.
#include <cstdint>

#include "core/rng.h"

namespace psgd::seeds {

inline constexpr std::uint64_t kPlacement = 1;
inline constexpr std::uint64_t kValidation = 3;
inline constexpr std::uint64_t kPowerSgd = 0x706f77657273ULL;  // "powers"
// A worker's batch stream as the Trainer takes it (nn::TrainerOptions::batch_stream).
inline constexpr std::uint64_t batch_order(std::uint64_t worker) {
  return 1000 + worker;
}
inline constexpr std::uint64_t worker_delay(std::uint64_t worker) {
  return 2000 + worker;
}
inline constexpr std::uint64_t codec(std::uint64_t sender) {
  return 0xC0DEC000ULL + sender;
}
inline constexpr std::uint64_t sim_straggler(std::uint64_t worker) {
  return 0x7374726167ULL + worker;  // "strag"
}
inline constexpr std::uint64_t kSimJitter = 0x6a6974746572ULL;  // "jitter"
inline constexpr std::uint64_t kSimShare = 0x776569676874ULL;   // "weight"

// The seed of stream `stream` of a job whose --seed is `job_seed`.
inline constexpr std::uint64_t of(std::uint64_t job_seed, std::uint64_t stream) {
  return derive_seed(job_seed, stream);
}

}  // namespace psgd::seeds
