#pragma once
// Private to nn/ and tests/nn: the torch module behind a Trainer. Includes torch.
#include <torch/torch.h>

#include "nn/trainer.h"

namespace psgd::nn {

struct TrainerAccess {
  // The module whose parameters are views into trainer.parameters().
  static torch::nn::Sequential module(Trainer& trainer);
};

}  // namespace psgd::nn
