#pragma once
// Where the training data goes: which samples form each block (--block_assignment) and which
// workers hold each block (--redundancy). The TCP server and the simulator share this so that the
// same job places the same samples on the same workers in both.
#include <cstdint>
#include <vector>

#include "core/job_spec.h"
#include "nn/dataset.h"
#include "nn/partition.h"

namespace psgd {

struct DataPlacement {
  nn::Placement placement;                        // blocks of each worker, workers of each block
  std::vector<std::vector<std::int64_t>> blocks;  // sample indices of each block

  std::vector<std::int64_t> samples_of(int worker) const {
    return nn::worker_samples(placement, blocks, worker);
  }
};

// Whether the job spends its redundancy on gradient coding (--codec gc, or its naive-duplication
// baseline ndc): their blocks follow the fractional-repetition layout and every worker computes
// one batch per block it holds (psgd/gc.h).
inline bool uses_gradient_coding(const JobSpec& spec) {
  return spec.codec == "gc" || spec.codec == "ndc";
}

// Whether each worker computes one batch per block it holds, each block with its own batch stream
// (nn::TrainerOptions block_ids): gradient coding, and ccdc (psgd/ccdc.h) on the r-subset blocks.
inline bool uses_block_streams(const JobSpec& spec) {
  return uses_gradient_coding(spec) || spec.codec == "ccdc";
}

// `rows` are the training rows to place (the rest is held out for validation); empty: all rows.
// Block indices are rows of `train`.
DataPlacement place_data(const JobSpec& spec, const nn::Dataset& train,
                         const std::vector<std::int64_t>& rows = {});

}  // namespace psgd
