#include "nn/net.h"

#include <fmt/format.h>

#include <map>
#include <sstream>

#include "core/error.h"

namespace psgd::nn {

torch::Tensor Net::forward(const torch::Tensor& x) {
  if (builtin_) return builtin_->forward(x);
  const c10::IValue out = script_->forward({x});
  if (!out.isTensor()) {
    throw ConfigError(fmt::format("the TorchScript model's forward() returned a {}, not one tensor",
                                  out.tagKind()));
  }
  return out.toTensor();
}

std::vector<std::pair<std::string, torch::Tensor>> Net::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> v;
  if (builtin_) {
    for (const auto& item : builtin_->named_parameters())
      v.emplace_back(item.key(), item.value());
    return v;
  }
  for (const auto& item : script_->named_parameters(/*recurse=*/true))
    if (item.value.requires_grad()) v.emplace_back(item.name, item.value);
  return v;
}

std::vector<std::pair<std::string, torch::Tensor>> Net::named_buffers() const {
  std::vector<std::pair<std::string, torch::Tensor>> v;
  if (builtin_) {
    for (const auto& item : builtin_->named_buffers())
      v.emplace_back(item.key(), item.value());
    return v;
  }
  for (const auto& item : script_->named_buffers(/*recurse=*/true))
    v.emplace_back(item.name, item.value);
  return v;
}

void Net::train(bool on) {
  if (builtin_) {
    builtin_->train(on);
  } else {
    script_->train(on);
  }
}

void Net::save(std::ostream& out) const {
  if (builtin_) {
    torch::save(builtin_, out);
    return;
  }
  // A copy whose every parameter and buffer has its own storage. The module's tensors are views
  // into the trainer's flat tensors, and TorchScript treats tensors that share a storage as one:
  // Module::deepcopy() and the archive writer would keep the first of them (fc1.weight) and lose
  // the others. clone() copies the structure; the tensors are replaced slot by slot.
  std::map<std::string, torch::Tensor> own;
  for (const auto& p : script_->named_parameters(/*recurse=*/true))
    own[p.name] = p.value.detach().clone().requires_grad_(p.value.requires_grad());
  for (const auto& b : script_->named_buffers(/*recurse=*/true))
    own[b.name] = b.value.detach().clone();
  torch::jit::Module copy = script_->clone();
  for (const auto& sub : copy.named_modules()) {
    const std::string prefix = sub.name.empty() ? "" : sub.name + ".";
    torch::jit::Module m = sub.value;
    std::vector<std::string> params, buffers;
    for (const auto& p : m.named_parameters(/*recurse=*/false))
      params.push_back(p.name);
    for (const auto& b : m.named_buffers(/*recurse=*/false))
      buffers.push_back(b.name);
    for (const auto& name : params)
      m.register_parameter(name, own.at(prefix + name), /*is_buffer=*/false);
    for (const auto& name : buffers)
      m.register_buffer(name, own.at(prefix + name));
  }
  copy.save(out);
}

torch::jit::Module load_script(const std::string& bytes, const std::string& what) {
  std::istringstream in(bytes);
  try {
    return torch::jit::load(in, torch::kCPU);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format(
        "{}: not a TorchScript module ({}); save one from Python with "
        "torch.jit.script(model).save(FILE) or torch.jit.trace(model, example).save(FILE)",
        what, torch_reason(e)));
  }
}

std::string torch_reason(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10 ? c10->what_without_backtrace() : e.what();
  std::istringstream in(text);
  std::string line, first, last_error;
  while (std::getline(in, line)) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (first.empty()) first = line;
    if (line.find("Error: ") != std::string::npos) last_error = line;
  }
  return last_error.empty() ? first : last_error;
}

}  // namespace psgd::nn
