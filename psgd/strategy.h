#pragma once
// Strategies as event-driven roles (DESIGN.md "The one seam that makes simulation possible").
//
// A strategy is a pair of roles that never touch threads, sockets or the system clock. A driver
// owns time and delivery: the TCP driver (experiments/) feeds them messages as frames arrive, the
// simulator feeds them in virtual-time order, and unit tests feed them by hand. Roles answer by
// appending Envelopes to an Outbox; the driver passes it to the node's Transport
// (network/transport.h), which sends them.
//
// Ordering: a driver delivers the messages of one sender to a role in the order they were sent,
// and calls a role from one thread at a time (its event thread), with one exception a worker role
// asks for: a detached computation (WorkerAction::detached, below).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "network/messages.h"
#include "network/transport.h"  // NodeId, Envelope, Outbox: what roles hand their driver

namespace psgd {

// What the server role reports to whoever drives and records the run.
struct RoundStats {
  std::int64_t iteration = 0;  // iterations completed after this round
  int gradients = 0;           // gradients that went into this update
  double train_loss = 0;       // mean of the workers' batch losses in this round
  std::int64_t samples = 0;    // samples that went into this update
  double decode_s = 0;         // server time spent decoding this round's gradients
  double apply_s = 0;          // server time spent in the optimiser step
  int missing = 0;             // workers the round closed without (--wait_for k < n)
};

// One worker's contribution to one round, as the server saw it.
struct WorkerReport {
  std::int64_t iteration = 0;
  double loss = 0;
  std::int64_t samples = 0;
  PhaseTimes times;                   // as reported by the worker
  double held_s = 0;                  // server time from this gradient's arrival to the reply
  std::uint64_t payload_bytes = 0;    // encoded size of the gradient (peer-to-peer: bytes sent to
                                      // peers, each frame as many times as it was sent)
  std::uint64_t multicast_bytes = 0;  // peer-to-peer: the same with each multicast counted once
  double compression_error = -1;  // ‖g − D(C(g))‖ / ‖g‖ as the worker measured it; < 0: not
  std::int64_t staleness = 0;     // server updates between the worker's read and this update
  std::int64_t local_steps = 1;  // optimiser steps the worker took for this contribution
  bool dropped = false;          // arrived too late for its round and was discarded
};

// Something a strategy did that the run's result depends on: an allreduce ring re-formed without
// a lost worker (--allreduce_on_loss shrink). Drivers write it into summary.json's events and the
// timeline (experiments/strategy_events.h).
struct StrategyEvent {
  std::string event;           // "ring_reformed"
  std::int64_t iteration = 0;  // iterations applied before the new ring's first
  std::vector<int> lost;       // the workers the ring lost since the previous one
  std::vector<int> members;    // the ring from then on, in ring order
  // Members that were one iteration behind and took the parameters and optimiser state of a
  // member that had completed `iteration` (its sum already held their gradient).
  std::vector<int> adopted;
};

class ServerObserver {
 public:
  virtual ~ServerObserver() = default;
  // After each global update, once per worker that contributed, then once for the round. A
  // contribution that was discarded (report.dropped) is reported on its own, with no round.
  virtual void on_worker(NodeId worker, const WorkerReport& report) = 0;
  virtual void on_round(const RoundStats& stats) = 0;
  // Rare (see StrategyEvent); between rounds. Default: ignored.
  virtual void on_event(const StrategyEvent& event) { (void)event; }
};

class ServerRole {
 public:
  virtual ~ServerRole() = default;
  // Every worker has joined and is ready: send the first messages.
  virtual void on_start(Outbox& out) = 0;
  // A strategy message from a worker. Throws ProtocolError for a message that breaks the
  // strategy's protocol (wrong iteration, a duplicate); the driver then drops that worker.
  virtual void on_message(NodeId from, const Message& message, Outbox& out) = 0;
  // Iterations applied to the global model so far.
  virtual std::int64_t iteration() const = 0;
  // True once the role has applied its last update and expects nothing more.
  virtual bool finished() const = 0;
  // The strategy's fault policy: `worker` is gone for good (its process died, or the simulator
  // failed it) and will neither send nor receive again. Return true to carry on without it (and
  // send what that requires), false if the run cannot continue; the driver then ends the run with
  // a failed status. The default is false: a synchronous strategy needs every worker.
  virtual bool on_worker_lost(NodeId worker, Outbox& out) {
    (void)worker;
    (void)out;
    return false;
  }

  // A new worker process has taken over `worker`'s slot after on_worker_lost() returned true: it
  // holds the same data and continues the same batch order (worker_batches()), and has no
  // parameters yet. Count it again and send it what it needs to start; return false if this
  // strategy cannot take a replacement (the driver then refuses the client). Default: false.
  virtual bool on_worker_rejoined(NodeId worker, Outbox& out) {
    (void)worker;
    (void)out;
    return false;
  }
  // Whether on_worker_rejoined() would take a replacement now: asked before a client is given a
  // lost worker's slot, so that one this strategy cannot take is refused at once, not after it
  // loaded its data. Default: false.
  virtual bool takes_replacements() const { return false; }

  // Checkpoint seam (psgd/checkpoint.h). A driver calls snapshot() only between two messages,
  // after an update, at a point where it also holds every worker's own state (WorkerRole::
  // snapshot) consistent with this one (experiments/server/checkpointer.h says how it gets
  // there). snapshot() returns everything the role needs besides the global parameters (the
  // driver saves those) to continue exactly: optimiser state, counters, per-worker bookkeeping;
  // restore() takes what snapshot() returned, on a role freshly built for the same job and
  // schedule, before on_start(), and throws ConfigError for state of another job. Both throw
  // ConfigError for a strategy that does not implement them (the default); its table entry then
  // says checkpoints = false and JobSpec::validate() refuses --checkpoint_every first.
  virtual std::vector<std::uint8_t> snapshot() const;
  virtual void restore(std::span<const std::uint8_t> state);
  // Batches worker `worker` has drawn from its batch stream as far as this role knows (the
  // gradients it received from it). A client that resumes or takes over that worker's slot skips
  // this many batches, so it continues the same batch order. -1: not known (the default).
  virtual std::int64_t worker_batches(NodeId worker) const {
    (void)worker;
    return -1;
  }
};

// What a worker role asks of its driver after handling an event.
struct WorkerAction {
  bool compute = false;  // call compute_step() next (the driver times it, or models its time)
  // With `compute`: the step's learner computation may run detached (WorkerRole::
  // compute_detached). Ignored without `compute`.
  bool detached = false;
};

class WorkerRole {
 public:
  virtual ~WorkerRole() = default;
  virtual WorkerAction on_message(const Message& message, Outbox& out) = 0;
  // One local computation (forward/backward, encode) requested by the last action.
  virtual WorkerAction compute_step(Outbox& out) = 0;
  // Detached computation: the communication thread of PyTorch DDP, with the thread owned by the
  // driver, never by the role. When an action says {.compute = true, .detached = true}, a driver
  // may call compute_detached() away from the event thread (the TCP client: on a compute thread
  // of its own; the simulator: inline, with its time on the worker's clock but the worker free
  // for messages meanwhile), keep calling on_message() on the event thread while it runs, and
  // call compute_step() on the event thread once it has returned (or carry its exception there).
  // A driver that does not detach simply calls compute_step(), which then does the detached part
  // itself: the results are the same either way, and in every order of messages around it.
  //
  // The role's side of the contract: compute_detached() is pure learner computation. It touches
  // only learner memory that no message handler touches while it runs (the gradient of layers
  // not yet final; the parameters, which no handler changes while a step is pending), reads only
  // role members that no handler writes, and writes only members that only it and compute_step()
  // use (the driver's hand-over orders the two). Sends nothing: what it produced, compute_step()
  // sends. Never called twice without a compute_step() between. Default: nothing to detach.
  virtual void compute_detached() {}
  virtual std::int64_t iterations_done() const = 0;

  // Checkpoint seam of a worker (psgd/checkpoint.h): what it carries from one iteration to the
  // next besides the parameters and its place in the batch order (its optimiser's momentum, its
  // codecs' residuals, momentum buffers and random streams), as bytes. A driver calls
  // snapshot() between two events; restore() on a worker freshly built for the same job, before
  // its first message, with what snapshot() returned (throws ProtocolError for state that does
  // not fit). Default: a worker without state (empty bytes; restore() accepts only empty state).
  virtual std::vector<std::uint8_t> snapshot() const { return {}; }
  virtual void restore(std::span<const std::uint8_t> state);
};

}  // namespace psgd
