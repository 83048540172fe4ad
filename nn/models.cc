#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "nn/models_impl.h"
#include "nn/options.h"

namespace psgd::nn {

namespace tnn = torch::nn;

namespace {

// resnet8 uses GroupNorm rather than BatchNorm: it has no running statistics (buffers), so its
// evaluation depends on the flat parameters only. cnn_bn has BatchNorm: its running statistics
// are buffers, which the workers report and the server averages (nn/trainer.h).
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

using Builder = tnn::Sequential (*)(std::int64_t channels, std::int64_t height, std::int64_t width,
                                    int num_classes);

struct ModelDef {
  ModelInfo info;
  Builder build;
};

// The built-in models, declared once: --model's values, --help and validation read this table.
const ModelDef kModels[] = {
    {{"mlp", "C*H*W-256-classes, ReLU"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       return tnn::Sequential(tnn::Flatten(), tnn::Linear(c * h * w, 256), tnn::ReLU(),
                              tnn::Linear(256, classes));
     }},
    {{"cnn", "two conv+pool layers, two dense; any C x H x W with H, W >= 4"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       require_side("cnn", h, w, 4);
       // 5x5 convolutions with padding 2 keep the size; each 2x2 pooling floors it.
       const std::int64_t flat = 32 * ((h / 2) / 2) * ((w / 2) / 2);
       return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(c, 16, 5).padding(2)), tnn::ReLU(),
                              tnn::MaxPool2d(tnn::MaxPool2dOptions(2)),
                              tnn::Conv2d(tnn::Conv2dOptions(16, 32, 5).padding(2)), tnn::ReLU(),
                              tnn::MaxPool2d(tnn::MaxPool2dOptions(2)), tnn::Flatten(),
                              tnn::Linear(flat, 128), tnn::ReLU(), tnn::Linear(128, classes));
     }},
    {{"cnn_bn",
      "cnn with BatchNorm and Dropout: two conv+BatchNorm+pool layers, dense 128, "
      "Dropout 0.5; H, W >= 4"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       require_side("cnn_bn", h, w, 4);
       // 3x3 convolutions with padding 1 keep the size; each 2x2 pooling floors it.
       const std::int64_t flat = 64 * ((h / 2) / 2) * ((w / 2) / 2);
       return tnn::Sequential(
           tnn::Conv2d(tnn::Conv2dOptions(c, 32, 3).padding(1).bias(false)), tnn::BatchNorm2d(32),
           tnn::ReLU(), tnn::MaxPool2d(tnn::MaxPool2dOptions(2)),
           tnn::Conv2d(tnn::Conv2dOptions(32, 64, 3).padding(1).bias(false)), tnn::BatchNorm2d(64),
           tnn::ReLU(), tnn::MaxPool2d(tnn::MaxPool2dOptions(2)), tnn::Flatten(),
           tnn::Linear(flat, 128), tnn::ReLU(), tnn::Dropout(0.5), tnn::Linear(128, classes));
     }},
    {{"dnn", "Parallel-SGD's DNN: dense layers of 784, 784, 392, 196, 128 and classes units, tanh"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       return tnn::Sequential(tnn::Flatten(), tnn::Linear(c * h * w, 784), tnn::Tanh(),
                              tnn::Linear(784, 784), tnn::Tanh(), tnn::Linear(784, 392),
                              tnn::Tanh(), tnn::Linear(392, 196), tnn::Tanh(),
                              tnn::Linear(196, 128), tnn::Tanh(), tnn::Linear(128, classes));
     }},
    {{"resnet8", "a small residual network with GroupNorm, made for 3x32x32 (H, W >= 8)"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       require_side("resnet8", h, w, 8);
       return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(c, 16, 3).padding(1).bias(false)),
                              group_norm(16), tnn::ReLU(), ResidualBlock(16, 16, 1),
                              ResidualBlock(16, 32, 2), ResidualBlock(32, 64, 2),
                              tnn::AdaptiveAvgPool2d(tnn::AdaptiveAvgPool2dOptions(1)),
                              tnn::Flatten(), tnn::Linear(64, classes));
     }},
    {{"autoencoder", "MLP C*H*W-128-32-128-C*H*W, reconstructs its input (--target xx)"},
     [](std::int64_t c, std::int64_t h, std::int64_t w, int classes) {
       // num_classes is the output width: C*H*W for reconstruction.
       return tnn::Sequential(tnn::Flatten(), tnn::Linear(c * h * w, 128), tnn::ReLU(),
                              tnn::Linear(128, 32), tnn::ReLU(), tnn::Linear(32, 128), tnn::ReLU(),
                              tnn::Linear(128, classes));
     }},
};

}  // namespace

std::vector<ModelInfo> model_table() {
  std::vector<ModelInfo> v;
  for (const ModelDef& m : kModels)
    v.push_back(m.info);
  return v;
}

torch::nn::Sequential make_model(const std::string& name, std::int64_t channels,
                                 std::int64_t height, std::int64_t width, int num_classes) {
  if (channels < 1 || height < 1 || width < 1 || num_classes < 1) {
    throw ConfigError(fmt::format("model {}: invalid input shape {}x{}x{} or {} classes", name,
                                  channels, height, width, num_classes));
  }
  for (const ModelDef& m : kModels)
    if (m.info.name == name) return m.build(channels, height, width, num_classes);
  std::vector<std::string> names;
  for (const ModelDef& m : kModels)
    names.emplace_back(m.info.name);
  throw ConfigError(
      fmt::format("--model {}: unknown model; choose one of: {}", name, fmt::join(names, ", ")));
}

}  // namespace psgd::nn
