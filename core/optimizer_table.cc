#include "core/optimizer_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/adaptive.h"
#include "core/error.h"
#include "core/sgd.h"

namespace psgd {
namespace {

constexpr std::string_view kAdamOptions[] = {"beta1", "beta2", "eps", "amsgrad"};
constexpr std::string_view kAdagradOptions[] = {"eps", "lr_decay", "initial_accumulator_value"};
constexpr std::string_view kRmspropOptions[] = {"eps", "alpha", "centered"};

constexpr OptimizerEntry kOptimizers[] = {
    {.name = "sgd",
     .summary = "torch.optim.SGD: --momentum 0.9, --nesterov, --weight_decay as L2; the default",
     .sgd_momentum = true,
     .make = [](const OptimizerSpec& spec, std::size_t size) -> std::unique_ptr<Optimizer> {
       return std::make_unique<SgdOptimizer>(spec, size);
     }},
    {.name = "adam",
     .summary = "torch.optim.Adam: --beta1 0.9, --beta2 0.999, --eps 1e-8, --amsgrad, "
                "--weight_decay as L2; try --learn_rate 0.001",
     .options = kAdamOptions,
     .scale_invariant = true,
     .make = [](const OptimizerSpec& spec, std::size_t size) -> std::unique_ptr<Optimizer> {
       return std::make_unique<AdamOptimizer>(spec, size, /*decoupled=*/false);
     }},
    {.name = "adamw",
     .summary = "torch.optim.AdamW: Adam with decoupled --weight_decay (Loshchilov & Hutter)",
     .options = kAdamOptions,
     .scale_invariant = true,
     .make = [](const OptimizerSpec& spec, std::size_t size) -> std::unique_ptr<Optimizer> {
       return std::make_unique<AdamOptimizer>(spec, size, /*decoupled=*/true);
     }},
    {.name = "adagrad",
     .summary = "torch.optim.Adagrad: --lr_decay 0, --initial_accumulator_value 0, --eps 1e-10",
     .options = kAdagradOptions,
     .scale_invariant = true,
     .default_eps = 1e-10,
     .make = [](const OptimizerSpec& spec, std::size_t size) -> std::unique_ptr<Optimizer> {
       return std::make_unique<AdagradOptimizer>(spec, size);
     }},
    {.name = "rmsprop",
     .summary = "torch.optim.RMSprop without momentum: --alpha 0.99, --eps 1e-8, --centered",
     .options = kRmspropOptions,
     .scale_invariant = true,
     .make = [](const OptimizerSpec& spec, std::size_t size) -> std::unique_ptr<Optimizer> {
       return std::make_unique<RmspropOptimizer>(spec, size);
     }},
};

}  // namespace

std::span<const OptimizerEntry> optimizer_table() {
  return kOptimizers;
}

const OptimizerEntry* find_optimizer(std::string_view name) {
  for (const OptimizerEntry& e : kOptimizers)
    if (e.name == name) return &e;
  return nullptr;
}

const OptimizerEntry& optimizer_entry(std::string_view name) {
  if (const OptimizerEntry* e = find_optimizer(name)) return *e;
  throw ConfigError(fmt::format("--optimizer {}: unknown value; choose one of: {}", name,
                                fmt::join(optimizer_names(), ", ")));
}

std::vector<std::string> optimizer_names() {
  std::vector<std::string> v;
  for (const OptimizerEntry& e : kOptimizers)
    v.emplace_back(e.name);
  return v;
}

}  // namespace psgd
