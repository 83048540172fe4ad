#pragma once
// The synchronisation strategies, declared once (STYLE.md §11). Everything that asks what a
// strategy can do reads its entry here instead of comparing names: the role factory
// (psgd/factory.h), validation (psgd/job.h), the drivers (does it need peer links? can it take a
// replacement worker?), the recorder, --help and the README. There is no self-registration.
//
// Adding a strategy: its roles in psgd/<name>.{h,cc} (psgd/strategy.h: a ServerRole and a
// WorkerRole), one entry in strategy_table.cc, tests in tests/psgd/ (the table-driven ones pick
// it up by themselves), and a line in the README. Its options, if it has any, go into
// StrategyOptions (psgd/options.h) with one visit line and its entry's `options`.
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "psgd/context.h"

namespace psgd {

struct StrategyJob;

enum class Topology {
  kParameterServer,  // workers talk to the server only
  kPeerToPeer,       // workers also link up with each other (PeerTable); the server coordinates
};

// Where --momentum_at auto puts the momentum.
enum class AutoMomentum {
  kWithErrorFeedback,  // on the workers when the codec uses error feedback, else on the server
  kWorker,             // on the workers (asgd, ssp: the server applies one stale gradient at once)
  kServer,             // where the optimiser runs (local_sgd's workers run their own)
};

// What a strategy says after a loss it cannot survive (StrategyEntry::on_loss_hint).
struct LossHint {
  std::string text;  // " (...)", appended to the failure; "" for nothing to say
  // The change of flags the text suggests, or null when it only says how things stand. The driver
  // shows the text only if the job with this change passes every check of the whole job (a hint
  // must never suggest what --check would refuse): experiments/job_spec.h loss_hint().
  void (*change)(StrategyJob& job) = nullptr;
};

struct StrategyEntry {
  std::string_view name;
  std::string_view summary;  // one line, for --help and the README
  Topology topology = Topology::kParameterServer;
  // An iteration is one worker's gradient (one server update each), so an epoch has node_count
  // times as many iterations as a synchronous round count would give.
  bool per_worker_updates = false;
  AutoMomentum auto_momentum = AutoMomentum::kWithErrorFeedback;
  bool worker_momentum = true;  // --momentum_at worker is meaningful
  bool compressors = true;      // carries a --codec other than plain
  // Its --codec is an allreduce compression (psgd/allreduce_compression.h: what the allreduce
  // sums), not a point-to-point codec of codecs/codec_table.h.
  bool allreduce_compressions = false;
  bool server_holds_model = true;  // --model_average applies (the server's model is the model)
  // Its roles implement snapshot()/restore(): --checkpoint_every, --resume.
  bool checkpoints = true;
  // The StrategyOptions flags this strategy reads (any other one set is refused).
  std::span<const std::string_view> options;
  // Appended to "lost worker N: ...; <strategy> cannot continue without it": what would let the
  // run go on, or why it cannot with the flags given (`workers_left` after the loss). May be null.
  LossHint (*on_loss_hint)(const StrategyJob& job, int workers_left) = nullptr;

  std::unique_ptr<ServerRole> (*make_server)(const StrategyJob& job, const Schedule& schedule,
                                             ServerContext context) = nullptr;
  std::unique_ptr<WorkerRole> (*make_worker)(const StrategyJob& job, const Schedule& schedule,
                                             WorkerContext context) = nullptr;
  // Rules of its own beyond the fields above (ConfigError naming the flags); may be null.
  void (*validate)(const StrategyJob& job) = nullptr;
};

std::span<const StrategyEntry> strategy_table();
const StrategyEntry* find_strategy(std::string_view name);
// The entry of job.psgd; ConfigError listing the strategies when there is none.
const StrategyEntry& strategy_of(const StrategyJob& job);
std::vector<std::string> strategy_names();

}  // namespace psgd
