#include <fmt/format.h>

#include "core/error.h"
#include "nn/models_impl.h"

namespace psgd::nn {

namespace tnn = torch::nn;

namespace {

// GroupNorm rather than BatchNorm: it has no running statistics (buffers), so the server's copy
// of the model, which never trains, evaluates exactly what the workers' flat parameters say.
tnn::GroupNorm group_norm(std::int64_t channels) {
  return tnn::GroupNorm(tnn::GroupNormOptions(std::min<std::int64_t>(4, channels), channels));
}

// A basic residual block (He et al., "Deep Residual Learning for Image Recognition", 2016):
// two 3x3 convolutions with a shortcut, a 1x1 strided convolution when the shape changes.
class ResidualBlockImpl : public tnn::Module {
 public:
  ResidualBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride)
      : conv1(register_module(
            "conv1",
            tnn::Conv2d(tnn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)))),
        norm1(register_module("norm1", group_norm(out))),
        conv2(register_module("conv2",
                              tnn::Conv2d(tnn::Conv2dOptions(out, out, 3).padding(1).bias(false)))),
        norm2(register_module("norm2", group_norm(out))) {
    if (stride != 1 || in != out) {
      shortcut = register_module(
          "shortcut", tnn::Conv2d(tnn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(norm1(conv1(x)));
    y = norm2(conv2(y));
    return torch::relu(y + (shortcut ? shortcut(x) : x));
  }

  tnn::Conv2d conv1;
  tnn::GroupNorm norm1;
  tnn::Conv2d conv2;
  tnn::GroupNorm norm2;
  tnn::Conv2d shortcut{nullptr};
};
TORCH_MODULE(ResidualBlock);

void require_side(const std::string& name, std::int64_t height, std::int64_t width,
                  std::int64_t min) {
  if (height < min || width < min) {
    throw ConfigError(fmt::format("model {} needs images of at least {}x{}, got {}x{}", name, min,
                                  min, height, width));
  }
}

}  // namespace

torch::nn::Sequential make_model(const std::string& name, std::int64_t channels,
                                 std::int64_t height, std::int64_t width, int num_classes) {
  if (channels < 1 || height < 1 || width < 1 || num_classes < 1) {
    throw ConfigError(fmt::format("model {}: invalid input shape {}x{}x{} or {} classes", name,
                                  channels, height, width, num_classes));
  }
  const std::int64_t features = channels * height * width;
  if (name == "mlp") {
    return tnn::Sequential(tnn::Flatten(), tnn::Linear(features, 256), tnn::ReLU(),
                           tnn::Linear(256, num_classes));
  }
  if (name == "cnn") {
    require_side(name, height, width, 4);
    // 5x5 convolutions with padding 2 keep the size; each 2x2 pooling floors it.
    const std::int64_t flat = 32 * ((height / 2) / 2) * ((width / 2) / 2);
    return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(channels, 16, 5).padding(2)), tnn::ReLU(),
                           tnn::MaxPool2d(tnn::MaxPool2dOptions(2)),
                           tnn::Conv2d(tnn::Conv2dOptions(16, 32, 5).padding(2)), tnn::ReLU(),
                           tnn::MaxPool2d(tnn::MaxPool2dOptions(2)), tnn::Flatten(),
                           tnn::Linear(flat, 128), tnn::ReLU(), tnn::Linear(128, num_classes));
  }
  if (name == "resnet8") {
    require_side(name, height, width, 8);
    return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(channels, 16, 3).padding(1).bias(false)),
                           group_norm(16), tnn::ReLU(), ResidualBlock(16, 16, 1),
                           ResidualBlock(16, 32, 2), ResidualBlock(32, 64, 2),
                           tnn::AdaptiveAvgPool2d(tnn::AdaptiveAvgPool2dOptions(1)), tnn::Flatten(),
                           tnn::Linear(64, num_classes));
  }
  if (name == "autoencoder") {
    // num_classes is the output width: C*H*W for reconstruction.
    return tnn::Sequential(tnn::Flatten(), tnn::Linear(features, 128), tnn::ReLU(),
                           tnn::Linear(128, 32), tnn::ReLU(), tnn::Linear(32, 128), tnn::ReLU(),
                           tnn::Linear(128, num_classes));
  }
  throw ConfigError(
      fmt::format("unknown model '{}': expected one of mlp, cnn, resnet8, autoencoder", name));
}

}  // namespace psgd::nn
