#pragma once
// The server's checkpoints (--checkpoint_every, --resume; the format is psgd/checkpoint.h).
//
// load() reads RUN_DIR/checkpoint.bin for --resume and checks, before any worker is asked to
// join, that it belongs to this job and that the strategy accepts its state. maybe_write() runs
// after each update and writes a checkpoint when the period or an epoch end asks for one: the
// parameters, the role's snapshot, each worker's batch count and the driver's own state (the
// recorder's and the events). Socket-free: it is given what it saves.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/clock.h"
#include "experiments/job_spec.h"
#include "psgd/checkpoint.h"
#include "psgd/context.h"
#include "psgd/strategy.h"

namespace psgd {

class RunRecorder;

class Checkpointer {
 public:
  Checkpointer(const JobSpec& spec, const Schedule& schedule, std::size_t num_parameters);

  CheckpointHeader header() const;
  // --resume: the checkpoint in `run_dir`, checked against this job. ConfigError naming the file.
  Checkpoint load(const std::string& run_dir) const;

  // After an update that took the role from `iteration_before` (and the recorder from
  // `epochs_before` epochs): writes `path` when the period or an epoch end asks for it, or at
  // once with `now` (a signalled server's last checkpoint). Returns whether it wrote; IoError
  // ("cannot write <path>: <reason>") when writing failed, the previous checkpoint left whole.
  bool maybe_write(const ServerRole& role, RunRecorder& recorder, std::span<const float> parameters,
                   const nlohmann::json& events, std::int64_t iteration_before, int epochs_before,
                   const std::string& path, bool now = false);
  int written() const { return written_; }
  // The iteration of the last checkpoint written by this process (-1: none yet).
  std::int64_t last_iteration() const { return last_iteration_; }

 private:
  const JobSpec& spec_;
  Schedule schedule_;
  std::size_t num_parameters_;
  int written_ = 0;
  std::int64_t last_iteration_ = -1;
};

}  // namespace psgd
