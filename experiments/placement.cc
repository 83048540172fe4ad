#include "experiments/placement.h"

#include "core/rng.h"

namespace psgd {

DataPlacement place_data(const JobSpec& spec, const nn::Dataset& train) {
  DataPlacement d;
  d.placement = nn::place_blocks(spec.node_count, spec.redundancy);
  const int num_blocks = d.placement.num_blocks();
  const std::uint64_t seed = derive_seed(spec.seed, 1);
  if (spec.block_assignment == "non-iid" && spec.dirichlet_alpha > 0) {
    d.blocks = nn::dirichlet_blocks(train.labels, train.num_classes, num_blocks,
                                    spec.dirichlet_alpha, seed);
  } else if (spec.block_assignment == "non-iid") {
    d.blocks = nn::shard_blocks(train.labels, num_blocks, spec.shards_per_node, seed);
  } else {
    d.blocks = nn::iid_blocks(static_cast<std::int64_t>(train.size()), num_blocks, seed);
  }
  return d;
}

}  // namespace psgd
