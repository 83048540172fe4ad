#pragma once
// Private to nn/ and tests/nn: the network a Trainer trains. Includes torch.
//
// Either a built-in model of the table (nn/models.cc: a torch::nn::Sequential) or a TorchScript
// module (--model script:FILE.pt: torch.jit.script(model).save(FILE) or torch.jit.trace in Python,
// loaded here with torch::jit::load). Both give their trainable parameters and their buffers by
// name, in the order of Python's model.parameters() / named_buffers(), and a forward pass; the
// Trainer makes every parameter a view into its flat parameter tensor and every fp32 buffer a view
// into its flat buffer tensor.
#include <torch/script.h>
#include <torch/torch.h>

#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace psgd::nn {

class Net {
 public:
  Net() = default;
  explicit Net(torch::nn::Sequential module) : builtin_(std::move(module)) {}
  explicit Net(torch::jit::Module module) : script_(std::move(module)) {}

  bool scripted() const { return script_.has_value(); }
  torch::Tensor forward(const torch::Tensor& x);
  // Parameters that train (requires_grad), and every buffer, by name.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, torch::Tensor>> named_buffers() const;
  void train(bool on);
  // Writes the module to `out`: torch::save of the Sequential (C++ torch::load reads it), or the
  // TorchScript module itself (torch.jit.load in Python reads it, with its code).
  void save(std::ostream& out) const;
  // The built-in module (null for a TorchScript one).
  torch::nn::Sequential builtin() const { return builtin_; }

 private:
  torch::nn::Sequential builtin_{nullptr};
  std::optional<torch::jit::Module> script_;
};

// Loads a TorchScript module from the bytes of its file. ConfigError naming `what` when the bytes
// are not a TorchScript archive (a state dict saved with torch.save, say).
torch::jit::Module load_script(const std::string& bytes, const std::string& what);

// The most useful line of a torch error: TorchScript errors (std::runtime_error from the
// interpreter) end with the Python exception ("RuntimeError: mat1 and mat2 shapes cannot be
// multiplied ..."), C++ ones (c10::Error) start with their message.
std::string torch_reason(const std::exception& e);

}  // namespace psgd::nn
