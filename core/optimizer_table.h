#pragma once
// The optimisers, declared once (STYLE.md §11): --optimizer's values, --help, which flags each
// reads, whether SGD momentum (and so --momentum_at) applies, and the factory. Everything that asks
// what an optimiser does reads its entry here: validation (core/optimizer.h), the roles'
// factory (psgd/factory.h), the asynchronous servers (psgd/async_update.h).
//
// Adding an optimiser: a class deriving from Optimizer (core/optimizer.h) that performs
// torch.optim's operations in torch's order, one entry in optimizer_table.cc, its flags (if new)
// in OptimizerOptions with one visit line, and a comparison with libtorch's optimiser in
// tests/nn/optimizer_torch_test.cc.
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/optimizer.h"

namespace psgd {

struct OptimizerEntry {
  std::string_view name;
  std::string_view summary;  // one line, for --help and the README
  // OptimizerOptions flags this optimiser reads besides optimizer, learn_rate, weight_decay and
  // momentum_at (any other one set is refused).
  std::span<const std::string_view> options;
  // SGD's heavy-ball momentum: --momentum and --nesterov, and --momentum_at worker can move it to
  // the workers (codecs/momentum.h). The others keep all their state where they run.
  bool sgd_momentum = false;
  // The step does not grow with the gradient's scale (m / sqrt(v)): the asynchronous servers
  // weight such an optimiser's update through its learning rate, not through the gradient.
  bool scale_invariant = false;
  double default_eps = 1e-8;
  std::unique_ptr<Optimizer> (*make)(const OptimizerSpec& spec, std::size_t size) = nullptr;
};

std::span<const OptimizerEntry> optimizer_table();
const OptimizerEntry* find_optimizer(std::string_view name);
// The entry named `name`; ConfigError listing the optimisers when there is none.
const OptimizerEntry& optimizer_entry(std::string_view name);
std::vector<std::string> optimizer_names();

}  // namespace psgd
