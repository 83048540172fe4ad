#include "core/optimizer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fields_json.h"
#include "core/optimizer_table.h"

namespace psgd {
namespace {

constexpr char kStateMagic[8] = {'P', 'S', 'G', 'D', 'O', 'P', 'T', '1'};

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

// Reads T at `at` and advances it; ConfigError when the bytes end first.
template <class T>
T get(std::span<const std::uint8_t> b, std::size_t& at) {
  if (b.size() - at < sizeof(T)) throw ConfigError("optimiser state: truncated");
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}

std::string readers_of(const std::string& flag) {
  std::vector<std::string> names;
  for (const OptimizerEntry& e : optimizer_table()) {
    const bool reads = std::find(e.options.begin(), e.options.end(), flag) != e.options.end();
    if (reads || ((flag == "momentum" || flag == "nesterov") && e.sgd_momentum)) {
      names.emplace_back(e.name);
    }
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

std::string OptimizerOptions::optimizer_help() {
  std::string text = "Optimiser (torch.optim semantics), run where the strategy applies updates:";
  for (const OptimizerEntry& e : optimizer_table())
    text += fmt::format(" {} ({});", e.name, e.summary);
  text.back() = '.';
  return text;
}

double OptimizerOptions::effective_eps() const {
  if (eps > 0) return eps;
  const OptimizerEntry* e = find_optimizer(optimizer);
  return e ? e->default_eps : 1e-8;
}

void OptimizerOptions::validate() const {
  const OptimizerEntry& entry = optimizer_entry(optimizer);
  if (!(learn_rate > 0.0) || !std::isfinite(learn_rate)) {
    throw ConfigError(fmt::format("--learn_rate {}: must be a positive finite number", learn_rate));
  }
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    throw ConfigError(fmt::format("--momentum {}: must be in [0, 1)", momentum));
  }
  if (nesterov && momentum == 0.0) throw ConfigError("--nesterov needs a non-zero --momentum");
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay)) {
    throw ConfigError(fmt::format("--weight_decay {}: must be a finite number >= 0", weight_decay));
  }
  if (momentum_at != "auto" && momentum_at != "worker" && momentum_at != "server") {
    throw ConfigError(fmt::format(
        "--momentum_at {}: unknown value; choose one of: auto, worker, server", momentum_at));
  }
  for (const auto& [flag, value] :
       {std::pair{"beta1", beta1}, std::pair{"beta2", beta2}, std::pair{"alpha", alpha}}) {
    if (!(value >= 0.0 && value < 1.0)) {
      throw ConfigError(fmt::format("--{} {}: must be in [0, 1)", flag, value));
    }
  }
  if (!(eps >= 0.0) || !std::isfinite(eps)) {
    throw ConfigError(
        fmt::format("--eps {}: must be a small positive number (0: the default)", eps));
  }
  if (!(lr_decay >= 0.0) || !std::isfinite(lr_decay) || !(initial_accumulator_value >= 0.0) ||
      !std::isfinite(initial_accumulator_value)) {
    throw ConfigError("--lr_decay / --initial_accumulator_value: must be finite numbers >= 0");
  }
  // A flag the optimiser does not read would be dropped silently: refuse it. SGD's momentum at 0
  // is what the others do anyway.
  for (const std::string& name : changed_fields(*this)) {
    if (name == "optimizer" || name == "learn_rate" || name == "weight_decay" ||
        name == "momentum_at") {
      continue;
    }
    const bool reads =
        std::find(entry.options.begin(), entry.options.end(), name) != entry.options.end();
    if (name == "momentum" || name == "nesterov") {
      if (entry.sgd_momentum || (name == "momentum" && momentum == 0.0)) continue;
    } else if (reads) {
      continue;
    }
    throw ConfigError(fmt::format("--{} applies to --optimizer {} only, not --optimizer {}", name,
                                  readers_of(name), optimizer));
  }
  if (momentum_at == "worker" && !entry.sgd_momentum) {
    throw ConfigError(fmt::format(
        "--momentum_at worker with --optimizer {}: moving momentum to the workers is momentum "
        "correction for SGD (DGC, codecs/momentum.h); {} keeps its whole state where it runs; "
        "use --momentum_at auto or server",
        optimizer, optimizer));
  }
}

void Optimizer::step(std::span<float> params, std::span<const float> grad, std::int64_t iteration,
                     double lr_scale) {
  PSGD_CHECK_EQ(params.size(), grad.size(), "parameter and gradient sizes differ");
  PSGD_CHECK_EQ(params.size(), size_, "the optimiser was built for another model");
  ++steps_;
  apply(params, grad, spec_.schedule.rate(iteration) * lr_scale);
}

std::vector<std::uint8_t> Optimizer::snapshot() const {
  std::vector<std::uint8_t> out(kStateMagic, kStateMagic + 8);
  put(out, static_cast<std::uint32_t>(spec_.name.size()));
  out.insert(out.end(), spec_.name.begin(), spec_.name.end());
  put(out, steps_);
  put(out, static_cast<std::uint64_t>(size_));
  auto buffers = const_cast<Optimizer*>(this)->state();
  put(out, static_cast<std::uint32_t>(buffers.size()));
  for (const std::vector<float>* b : buffers) {
    put(out, static_cast<std::uint64_t>(b->size()));
    const auto* p = reinterpret_cast<const std::uint8_t*>(b->data());
    out.insert(out.end(), p, p + b->size() * sizeof(float));
  }
  return out;
}

void Optimizer::restore(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kStateMagic, 8) != 0) {
    throw ConfigError("optimiser state: not a psgd optimiser state");
  }
  std::size_t at = 8;
  const auto name_size = get<std::uint32_t>(bytes, at);
  if (name_size > bytes.size() - at) throw ConfigError("optimiser state: truncated");
  const std::string name(reinterpret_cast<const char*>(bytes.data() + at), name_size);
  at += name_size;
  const auto steps = get<std::int64_t>(bytes, at);
  const auto size = get<std::uint64_t>(bytes, at);
  const auto count = get<std::uint32_t>(bytes, at);
  auto buffers = state();
  if (name != spec_.name || size != size_ || count != buffers.size() || steps < 0) {
    throw ConfigError(fmt::format(
        "optimiser state of {} ({} values, {} buffers) does not fit this job's {} ({} values, {} "
        "buffers)",
        name, size, count, spec_.name, size_, buffers.size()));
  }
  std::vector<std::vector<float>> values(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto n = get<std::uint64_t>(bytes, at);
    if ((n != 0 && n != size_) || n * sizeof(float) > bytes.size() - at ||
        (n == 0) != buffers[i]->empty()) {
      throw ConfigError(fmt::format("optimiser state: buffer {} has {} values, expected {}", i, n,
                                    buffers[i]->empty() ? 0 : size_));
    }
    values[i].resize(n);
    if (n > 0) std::memcpy(values[i].data(), bytes.data() + at, n * sizeof(float));  // null if 0
    at += n * sizeof(float);
  }
  if (at != bytes.size()) throw ConfigError("optimiser state: trailing bytes");
  for (std::uint32_t i = 0; i < count; ++i)
    *buffers[i] = std::move(values[i]);
  steps_ = steps;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec, std::size_t size) {
  return optimizer_entry(spec.name).make(spec, size);
}

}  // namespace psgd
