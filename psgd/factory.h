#pragma once
// What a job's strategy needs, built from its table entries (psgd/strategy_table.h,
// psgd/coding_table.h): the schedule, the roles, the optimiser and the codecs of each link.
#include <cstdint>
#include <memory>
#include <vector>

#include "codecs/factory.h"
#include "psgd/coding_table.h"
#include "psgd/job.h"
#include "psgd/strategy_table.h"

namespace psgd {

// The schedule of the job's strategy. An epoch is always one pass over the training set; what
// one iteration is depends on the strategy: a synchronous round of node_count batches (ssgd), one
// local step of every worker (local_sgd), one server update of one worker's batch (asgd, ssp:
// node_count times as many iterations per epoch), or one batch per block (ccdc).
Schedule make_schedule(const StrategyJob& job, std::int64_t train_samples);

std::unique_ptr<ServerRole> make_server_role(const StrategyJob& job, const Schedule& schedule,
                                             ServerContext context);
std::unique_ptr<WorkerRole> make_worker_role(const StrategyJob& job, const Schedule& schedule,
                                             WorkerContext context);

// The optimiser the job's roles build (core/optimizer.h): --optimizer with its hyperparameters and
// the learning-rate schedule over `schedule`'s epochs (core/lr_schedule.h); SGD without momentum
// where the workers apply it before the codec.
OptimizerSpec optimizer_spec(const StrategyJob& job, const Schedule& schedule);

// Whether --momentum is applied on the workers, before compression (--momentum_at worker, or
// auto as the strategy's entry says), so that the optimiser that applies updates runs without
// momentum. Never for an optimiser other than sgd. See codecs/momentum.h for why error feedback
// wants it there, and psgd/async_update.h for why the asynchronous strategies do.
bool momentum_at_worker(const StrategyJob& job);

// The codec specs a job asks for: worker -> server (--codec and its options; `sender` picks the
// seed stream, core/seeds.h) and server -> worker (--server_codec, never with error feedback).
// A worker also passes what only it knows: the iterations per epoch (for --codec_warmup_epochs;
// 0: no warm-up) and its model's tensor sizes in flat order (for --codec_scope tensor; empty:
// global). Receivers need neither (the wire format does not depend on them). Coded schemes send
// exact fp32.
CodecSpec uplink_codec_spec(const StrategyJob& job, std::uint64_t sender,
                            std::int64_t iterations_per_epoch = 0,
                            std::vector<std::uint64_t> tensor_sizes = {});
CodecSpec downlink_codec_spec(const StrategyJob& job);

// The coded-redundancy scheme of the job, or nullptr (a compressor).
inline const CodingEntry* coding_of(const StrategyJob& job) {
  return find_coding(job.codec);
}
// How blocks are laid out over workers for this job.
BlockLayout block_layout(const StrategyJob& job);
// Whether each worker computes one batch per block it holds, each block with its own batch
// stream (nn::TrainerOptions block_ids): the coded schemes.
inline bool uses_block_streams(const StrategyJob& job) {
  return coding_of(job) != nullptr;
}
// Batches one synchronous round of the job computes: one per worker, or one per block (ccdc).
std::int64_t batches_per_round(const StrategyJob& job);
// Whether the job's roles can snapshot and restore (--checkpoint_every, --resume).
bool supports_checkpoints(const StrategyJob& job);

}  // namespace psgd
