#include "experiments/placement.h"

#include "core/seeds.h"
#include "psgd/factory.h"

namespace psgd {

DataPlacement place_data(const JobSpec& spec, const nn::Dataset& train,
                         const std::vector<std::int64_t>& rows) {
  DataPlacement d;
  const bool all = rows.empty();
  const auto count =
      all ? static_cast<std::int64_t>(train.size()) : static_cast<std::int64_t>(rows.size());
  std::vector<std::int64_t> labels;
  if (spec.block_assignment == "non-iid") {
    labels.reserve(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
      labels.push_back(
          train.labels[static_cast<std::size_t>(all ? i : rows[static_cast<std::size_t>(i)])]);
    }
  }
  d.placement = block_layout(spec) == BlockLayout::kFractionalRepetition
                    ? nn::place_fractional_repetition(spec.node_count, spec.redundancy)
                    : nn::place_blocks(spec.node_count, spec.redundancy);
  const int num_blocks = d.placement.num_blocks();
  const std::uint64_t seed = seeds::of(spec.seed, seeds::kPlacement);
  if (spec.block_assignment == "non-iid" && spec.dirichlet_alpha > 0) {
    d.blocks =
        nn::dirichlet_blocks(labels, train.num_classes, num_blocks, spec.dirichlet_alpha, seed);
  } else if (spec.block_assignment == "non-iid") {
    d.blocks = nn::shard_blocks(labels, num_blocks, spec.shards_per_node, seed);
  } else if (spec.block_assignment == "contiguous") {
    d.blocks = nn::contiguous_blocks(count, num_blocks);
  } else {
    d.blocks = nn::iid_blocks(count, num_blocks, seed);
  }
  if (!all) {  // positions among the placed rows -> rows of the training set
    for (auto& block : d.blocks) {
      for (auto& i : block)
        i = rows[static_cast<std::size_t>(i)];
    }
  }
  return d;
}

}  // namespace psgd
