#pragma once
// SimCluster: the simulation driver. The server role and every worker role of a job run in one
// process, on one thread, in the order of a discrete-event queue over virtual time
// (DESIGN.md "The one seam that makes simulation possible"). The roles are the very ones the TCP
// run uses; only delivery and time are simulated:
//
//   - a message leaves its sender when the handler that produced it returns (the sender's
//     NodeClock, network/sim/virtual_clock.h), handed over by the sender's Transport (the fan-out
//     and the byte counts of every driver, network/transport.h), travels through the NetworkModel
//     (network/sim/network_model.h: TCP flows sharing each link) with its real encoded frame
//     size, and is handed to the receiver's role at its delivery time;
//   - a node does one thing at a time: an event for a busy node waits until the node is free;
//   - a compute step (WorkerAction::compute) takes the learner's measured CPU time, or the
//     modelled ComputeModel::fixed_s, times the worker's slowdown, plus an optional
//     exponentially distributed extra delay drawn from a per-worker seeded generator;
//   - a detached compute step (WorkerAction::detached, allreduce --overlap) takes the same time
//     on a core of its own: the worker handles the messages that arrive meanwhile at their
//     arrival time, as the TCP client's event thread does beside its compute thread
//     (SimCluster::compute says what the model assumes);
//   - a worker fails at a given virtual time: from then on it neither sends nor receives, and the
//     server role's fault policy (ServerRole::on_worker_lost) decides whether the run goes on.
//
// The driver knows nothing of a particular strategy: workers may send without being asked, a
// server may answer one worker only, a worker may address another worker. It knows nothing of
// torch either: tests drive it with toy learners. With a modelled compute time a run is a pure
// function of its inputs: the same seed gives the same events in the same order.
//
// Threading: one thread; run() once per SimCluster.
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/learner.h"
#include "network/sim/event_queue.h"
#include "network/sim/network_model.h"
#include "network/sim/virtual_clock.h"
#include "network/transport.h"
#include "psgd/strategy.h"

namespace psgd {

inline constexpr double kNever = std::numeric_limits<double>::infinity();

struct ComputeModel {
  bool measured = true;  // thread CPU time of every handler (compute, codecs, the server's work)
  double fixed_s = 0;    // else: each compute_gradient() takes this long and nothing else costs
};

struct SimClusterOptions {
  int node_count = 1;
  sim::NetworkOptions network;
  ComputeModel compute;
  std::vector<double> slowdown;   // per worker, >= 1 stretches it (empty: all 1)
  double extra_delay_mean_s = 0;  // mean of the exponential extra delay per compute step
  std::vector<double> fail_at;    // per worker virtual time of failure (empty: none fail)
  std::uint64_t seed = 1;         // extra delays (the network's jitter has its own seed)
};

struct SimResult {
  bool ok = false;
  std::string status;        // "completed" or "failed: ..."
  double virtual_s = 0;      // time of the last event handled
  std::uint64_t events = 0;  // events scheduled
};

class SimCluster {
 public:
  explicit SimCluster(SimClusterOptions options);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // Clocks to build the roles with (ServerContext::clock, WorkerContext::clock). A worker's
  // clock may also be advanced by its learner (a --delay pause).
  const Clock& server_clock() const { return server_clock_; }
  sim::NodeClock& worker_clock(int worker);
  // The learner to give worker `worker`'s role: forwards to `learner` and makes each
  // compute_gradient() take the modelled time. Owned by the cluster; `learner` must outlive it.
  Learner* timed_learner(int worker, Learner* learner);

  // Runs until the server role has finished, the run failed, or nothing is left to happen.
  // `after_server_event` is called after every server event (the recorder evaluates there).
  SimResult run(ServerRole& server, std::span<WorkerRole* const> workers,
                const std::function<void()>& after_server_event = {});

  // Ends the run from `after_server_event` with `status` as it is (not ok): the driver's own reason
  // to stop, e.g. "diverged: ...". Nothing more happens after the event that called it.
  void stop(std::string status);

  // Called when a worker fails (--fail W@T), after the server role has decided: the worker, the
  // virtual time, and whether the strategy carries on without it (summary.json's worker_lost
  // event, as a real run records it).
  void on_worker_lost(std::function<void(NodeId worker, double at_s, bool carried_on)> f) {
    on_lost_ = std::move(f);
  }

  // Frame bytes the server has received from / sent to worker `worker` so far, as its Transport
  // counts them (network/transport.h: a message counts as sent when its handler hands it over,
  // as received once it has arrived).
  std::uint64_t bytes_up(int worker) const;
  std::uint64_t bytes_down(int worker) const;
  // Everything worker `worker` has sent and received so far, over every link (its trace's bytes).
  LinkTraffic worker_traffic(int worker) const;

 private:
  class Timed;
  class Link;
  using MessagePtr = std::shared_ptr<const Message>;
  struct Leg {
    NodeId to;
    MessagePtr message;
    std::uint64_t bytes;
  };

  Transport& transport(NodeId node);
  sim::NodeClock& clock_of(NodeId node);
  double& free_at(NodeId node) { return free_at_[static_cast<std::size_t>(node + 1)]; }
  bool failed(NodeId node, double t) const;
  // Runs `handle` on `node` at the current time, or later if the node is busy.
  void at_node(NodeId node, std::function<void()> handle);
  void post(NodeId from, Outbox&& out);
  void network_changed();
  void deliver(NodeId from, NodeId to, MessagePtr message);
  // A compute step of `worker`; `detached`: its detached computation (WorkerAction::detached),
  // then compute_step() at the computation's end.
  void compute(NodeId worker, bool detached);
  void worker_lost(NodeId worker);
  void after_server();
  void end(bool ok, std::string status);

  SimClusterOptions opts_;
  sim::EventQueue queue_;
  sim::NetworkModel net_;
  sim::NodeClock server_clock_;
  std::vector<std::unique_ptr<sim::NodeClock>> worker_clocks_;
  std::vector<std::unique_ptr<Timed>> timed_;
  std::vector<double> free_at_;               // index 0: the server, w + 1: worker w
  std::vector<bool> detaching_;               // per worker: a detached computation is running
  std::vector<std::unique_ptr<Link>> links_;  // each node's Transport; index: node + 1
  std::vector<Leg> departing_;                // what the Transport of post()'s node hands over
  std::map<std::uint64_t, Leg> in_flight_;    // by the network model's message id
  double network_event_at_ = kNever;          // when the pending network event runs
  std::uint64_t network_generation_ = 0;      // of that event; older ones do nothing

  ServerRole* server_ = nullptr;
  std::vector<WorkerRole*> workers_;
  std::function<void()> after_server_event_;
  std::function<void(NodeId, double, bool)> on_lost_;
  bool done_ = false;
  SimResult result_;
};

}  // namespace psgd
