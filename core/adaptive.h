#pragma once
// The adaptive optimisers on flat vectors: Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter
// 2019, decoupled weight decay; AMSGrad, Reddi et al. 2018), Adagrad (Duchi et al. 2011) and
// RMSprop (Tieleman & Hinton 2012). Each step performs the operations of libtorch's
// torch::optim::Adam, AdamW, Adagrad and RMSprop (the same as Python's torch.optim 1.13,
// single-tensor path) in their order, in fp32 with the scalars computed in double as torch does:
//
//   adam     g += wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g·g; (amsgrad: v̂ = max(v̂, v))
//            p −= (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//   adamw    p ·= 1 − lr·wd, then adam without the L2 term
//   adagrad  g += wd·p; s += g·g; p −= lr / (1 + (t − 1)·lr_decay) · g / (√s + ε)
//   rmsprop  g += wd·p; a = α·a + (1−α)·g·g; (centered: c = α·c + (1−α)·g, a' = a − c·c)
//            p −= lr · g / (√a' + ε)
//
// RMSprop's momentum is not offered (torch's default is none; --momentum is SGD's).
#include "core/optimizer.h"

namespace psgd {

class AdamOptimizer final : public Optimizer {
 public:
  // decoupled: AdamW.
  AdamOptimizer(const OptimizerSpec& spec, std::size_t size, bool decoupled);

 protected:
  void apply(std::span<float> params, std::span<const float> grad, double lr) override;
  std::vector<std::vector<float>*> state() override { return {&m_, &v_, &v_max_}; }

 private:
  bool decoupled_;
  std::vector<float> m_, v_, v_max_;
};

class AdagradOptimizer final : public Optimizer {
 public:
  AdagradOptimizer(const OptimizerSpec& spec, std::size_t size);

 protected:
  void apply(std::span<float> params, std::span<const float> grad, double lr) override;
  std::vector<std::vector<float>*> state() override { return {&sum_}; }

 private:
  std::vector<float> sum_;
};

class RmspropOptimizer final : public Optimizer {
 public:
  RmspropOptimizer(const OptimizerSpec& spec, std::size_t size);

 protected:
  void apply(std::span<float> params, std::span<const float> grad, double lr) override;
  std::vector<std::vector<float>*> state() override { return {&square_avg_, &grad_avg_}; }

 private:
  std::vector<float> square_avg_, grad_avg_;
};

}  // namespace psgd
