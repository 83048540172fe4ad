#pragma once
// Divergence: a run whose losses are no longer numbers (NaN or ±inf), and what a driver says
// about it (JobSpec::on_divergence: stop, the default, or continue).
//
// What is watched, and why per round: every server role reports a RoundStats after each update
// (ssgd, ssp, the coded schemes: a round of gradients; asgd: one gradient applied; local_sgd: an
// averaging round; allreduce and broadcast: an iteration of the ring or the all-to-all), and its
// train_loss is the mean of the batch losses of the workers in it, so a NaN or an infinity in any
// one worker's loss makes it non-finite. That is the earliest point at which the server sees a
// loss, the same for every strategy and for every driver (the TCP server and --simulate share
// RunRecorder, its observer); an epoch-end check would burn up to an epoch of NaN first. The
// server's own evaluations (test and validation loss at each epoch end, and the initial one) are
// watched too: parameters that became inf in the last update of an epoch show there first.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "experiments/job_spec.h"

namespace psgd {

struct Divergence {
  int epoch = 0;               // the epoch it happened in (1-based; 0: the initial evaluation)
  std::int64_t iteration = 0;  // the iteration whose loss was not finite (or the evaluated one)
  std::string what;            // "training loss", "test loss" or "validation loss"
  double value = 0;            // the non-finite value (NaN or ±inf)
  std::optional<double> last_finite;  // the last finite training loss of a round, if any
  std::int64_t last_finite_iteration = 0;
};

// Watches the losses as they arrive; remembers the first non-finite one.
class DivergenceWatch {
 public:
  // A round's mean training loss, after `iteration` iterations, in epoch `epoch` (1-based).
  void round(int epoch, std::int64_t iteration, double train_loss);
  // An evaluation of the parameters at `iteration` (the end of epoch `epoch`).
  void evaluated(int epoch, std::int64_t iteration, const std::string& what, double loss);
  const std::optional<Divergence>& divergence() const { return first_; }

 private:
  std::optional<Divergence> first_;
  std::optional<double> last_finite_;
  std::int64_t last_finite_iteration_ = 0;
};

// summary.json's status for a run stopped by `d`: "diverged: training loss nan at iteration 73
// (epoch 2 of 5); last finite 7.1e+26 at iteration 72".
std::string divergence_status(const Divergence& d, const JobSpec& spec);
// The one line a driver prints (without its "init_server: " prefix): what happened and what to
// try, from this job's settings. `stopping`: --on_divergence stop (else the run carries on).
std::string divergence_line(const Divergence& d, const JobSpec& spec, bool stopping);
// summary.json's "divergence" (null when the run did not diverge) and its "diverged" event.
nlohmann::json divergence_json(const std::optional<Divergence>& d);
// What both drivers do when they first see `d`: print divergence_line() to stderr (with the
// "init_server: " prefix) and return the "diverged" event for summary.json, its time under
// `clock_key` ("wall_s" over TCP, "virtual_s" under --simulate).
nlohmann::json announce_divergence(const Divergence& d, const JobSpec& spec, const char* clock_key,
                                   double now);

}  // namespace psgd
