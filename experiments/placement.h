#pragma once
// Where the training data goes: which samples form each block (--block_assignment) and which
// workers hold each block (--redundancy, laid out as the job's coded scheme needs,
// psgd::block_layout). Part of the job plan (experiments/job_plan.h), so the same job places the
// same samples on the same workers in every driver.
#include <cstdint>
#include <vector>

#include "experiments/job_spec.h"
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

// `rows` are the training rows to place (the rest is held out for validation); empty: all rows.
// Block indices are rows of `train`.
DataPlacement place_data(const JobSpec& spec, const nn::Dataset& train,
                         const std::vector<std::int64_t>& rows = {});

}  // namespace psgd
