#pragma once
// Private to nn/ and tests/nn: the torch module behind a Trainer. Includes torch.
#include <torch/torch.h>

#include "nn/net.h"
#include "nn/trainer.h"

namespace psgd::nn {

struct TrainerAccess {
  // The built-in module whose parameters are views into trainer.parameters() (null for a
  // TorchScript model).
  static torch::nn::Sequential module(Trainer& trainer);
  // The network, built-in or TorchScript.
  static Net& net(Trainer& trainer);
};

}  // namespace psgd::nn
