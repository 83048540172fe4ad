#pragma once
// Private to nn/: the model zoo, built by name. Includes torch, so only nn/*.cc (and nn tests)
// may include this header.
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace psgd::nn {

// Builds the named model for channels x height x width inputs:
//   mlp  Flatten, Linear(C*H*W, 256), ReLU, Linear(256, classes)
//   cnn  Conv2d(C, 16, 5, pad 2), ReLU, MaxPool2d(2), Conv2d(16, 32, 5, pad 2), ReLU,
//        MaxPool2d(2), Flatten, Linear(32*(H/4)*(W/4), 128), ReLU, Linear(128, classes);
//        needs H, W >= 4
//   cnn_bn  Conv2d(C, 32, 3, pad 1, no bias), BatchNorm2d, ReLU, MaxPool2d(2), Conv2d(32, 64, 3,
//        pad 1, no bias), BatchNorm2d, ReLU, MaxPool2d(2), Flatten, Linear(64*(H/4)*(W/4), 128),
//        ReLU, Dropout(0.5), Linear(128, classes); needs H, W >= 4
//   dnn  Flatten, then Linear layers of 784, 784, 392, 196, 128 and classes units with tanh between
//        (Parallel-SGD's DNN; its softmax is the cross-entropy's)
//   resnet8  conv3x3(C, 16), GroupNorm, ReLU, three residual blocks (16, 32/2, 64/2 channels,
//        two 3x3 convolutions each), global average pooling, Linear(64, classes): 8 weight
//        layers; made for 3x32x32 (CIFAR-10), takes any C and H, W >= 8
//   autoencoder  Flatten, Linear(C*H*W, 128), ReLU, Linear(128, 32), ReLU, Linear(32, 128), ReLU,
//        Linear(128, outputs) -- for reconstruction (--target xx) pass outputs = C*H*W as
//        num_classes
// With --target xx every model is built with num_classes = C*H*W outputs.
// Parameter names match the equivalent Python nn.Sequential ("1.weight", ...), so a saved state
// dict loads into it. Throws ConfigError for an unknown name or unusable shape.
torch::nn::Sequential make_model(const std::string& name, std::int64_t channels,
                                 std::int64_t height, std::int64_t width, int num_classes);

}  // namespace psgd::nn
