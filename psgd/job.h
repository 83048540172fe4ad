#pragma once
// StrategyJob: the part of a job the strategy layer reads, composed of the components' options
// (core/cluster_options.h, psgd/options.h, codecs/options.h, core/optimizer.h, core/lr_schedule.h,
// core/model_average.h).
// The whole job (experiments/job_spec.h) adds data, model and run options to it. Members keep their
// flat names (job.codec, job.node_count): they are the flags and JSON keys.
#include "codecs/options.h"
#include "core/cluster_options.h"
#include "core/lr_schedule.h"
#include "core/model_average.h"
#include "core/optimizer.h"
#include "psgd/options.h"

namespace psgd {

struct StrategyJob : ClusterOptions,
                     StrategyOptions,
                     CodecOptions,
                     OptimizerOptions,
                     LrScheduleOptions,
                     ModelAverageOptions {
  // Every component's own checks, then the rules of the strategy's and codec's table entries
  // (what the strategy carries, which options it reads, what a coded scheme needs). Throws
  // ConfigError naming the flags; expects canonicalize() to have run.
  void validate() const;
  // Rewrites accepted spellings into the canonical job, returning one line per rewrite for the
  // log and config.json: Parallel-SGD's --psgd ssgd --codec ccdc is --psgd broadcast --codec ccdc.
  std::vector<std::string> canonicalize();

  // --model_average's decay for this strategy: 0 for off (the last iterate is evaluated).
  double model_average_decay() const;
  std::string short_name() const;  // "ssgd-plain-n4", for logs and run directory names

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    ClusterOptions::fields(self, visit);
    StrategyOptions::fields(self, visit);
    CodecOptions::fields(self, visit);
    OptimizerOptions::fields(self, visit);
    LrScheduleOptions::fields(self, visit);
    ModelAverageOptions::fields(self, visit);
  }
};

// --model_average auto's decay for the per-worker-update strategies (asgd, ssp).
inline constexpr double kAsyncModelAverageDecay = 0.99;

}  // namespace psgd
