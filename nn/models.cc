#include <fmt/format.h>

#include "core/error.h"
#include "nn/models_impl.h"

namespace psgd::nn {

namespace tnn = torch::nn;

torch::nn::Sequential make_model(const std::string& name, std::int64_t channels,
                                 std::int64_t height, std::int64_t width, int num_classes) {
  if (channels < 1 || height < 1 || width < 1 || num_classes < 1) {
    throw ConfigError(fmt::format("model {}: invalid input shape {}x{}x{} or {} classes", name,
                                  channels, height, width, num_classes));
  }
  if (name == "mlp") {
    return tnn::Sequential(tnn::Flatten(), tnn::Linear(channels * height * width, 256), tnn::ReLU(),
                           tnn::Linear(256, num_classes));
  }
  if (name == "cnn") {
    if (height < 4 || width < 4) {
      throw ConfigError(
          fmt::format("model cnn needs images of at least 4x4, got {}x{}", height, width));
    }
    return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(channels, 16, 5).padding(2)), tnn::ReLU(),
                           tnn::MaxPool2d(tnn::MaxPool2dOptions(2)),
                           tnn::Conv2d(tnn::Conv2dOptions(16, 32, 5).padding(2)), tnn::ReLU(),
                           tnn::MaxPool2d(tnn::MaxPool2dOptions(2)), tnn::Flatten(),
                           tnn::Linear(32 * (height / 4) * (width / 4), 128), tnn::ReLU(),
                           tnn::Linear(128, num_classes));
  }
  throw ConfigError(fmt::format("unknown model '{}': expected one of mlp, cnn", name));
}

}  // namespace psgd::nn
