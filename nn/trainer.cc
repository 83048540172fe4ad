// Over 400 lines on purpose: the Trainer is one torch translation unit (data gathering, batch
// streams, the flat-parameter model and buffers, the TorchScript checks, evaluation, saving);
// another would cost 10-20 s of compile time each for no clearer boundary. The network itself
// (built-in or TorchScript) is nn/net.cc.
#include "nn/trainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/rng.h"
#include "nn/models_impl.h"
#include "nn/options.h"
#include "nn/trainer_impl.h"

namespace psgd::nn {
namespace {

constexpr std::uint64_t kBatchOrderStream = 0x6261746368;        // "batch"
constexpr std::uint64_t kBlockOrderStream = 0x626c6f636b000000;  // "block", then the block id
constexpr std::uint64_t kDropoutStream = 0x64726f706f7574;       // "dropout"
constexpr std::int64_t kEvalChunk = 1000;

// Held while a trainer builds its model (torch::manual_seed, then the initial weights) or seeds
// torch's default generator for a training forward pass: trainers in one process (the
// simulator's workers, the drivers test's clients) must not interleave their draws.
std::mutex& generator_mutex() {
  static std::mutex m;
  return m;
}

// The bytes of a file; ConfigError naming the flag when it cannot be read.
std::string read_script(const std::string& model, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("--model {}: cannot open {}", model, path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string shape_text(const torch::Tensor& t) {
  std::string text;
  for (std::int64_t d : t.sizes())
    text += (text.empty() ? "" : " x ") + std::to_string(d);
  return "[" + text + "]";
}

torch::Device pick_device(const std::string& name) {
  if (name == "cpu" || name == "auto") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) {
      throw ConfigError("device cuda requested but CUDA is not available (use --device cpu)");
    }
    throw ConfigError("cuda not supported yet by the flat-parameter path (use --device cpu)");
  }
  throw ConfigError(fmt::format("unknown device '{}': expected auto, cpu or cuda", name));
}

std::string group_thousands(std::size_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// A read-only tensor view of a Dataset's samples [first, first + count) and their labels (float
// targets, count x target_dims, for regression data); the dataset outlives it.
std::pair<torch::Tensor, torch::Tensor> view_of(const Dataset& d, std::int64_t first,
                                                std::int64_t count) {
  auto* images = const_cast<float*>(d.images.data()) + first * d.sample_numel();
  auto x = torch::from_blob(images, {count, d.channels, d.height, d.width}, torch::kFloat);
  if (d.target_dims > 0) {
    auto* targets = const_cast<float*>(d.targets.data()) + first * d.target_dims;
    return {x, torch::from_blob(targets, {count, d.target_dims}, torch::kFloat)};
  }
  auto* labels = const_cast<std::int64_t*>(d.labels.data()) + first;
  return {x, torch::from_blob(labels, {count}, torch::kInt64)};
}

// The shape and type of a batch's labels: N class indices, or N x T float targets.
torch::Tensor empty_labels(std::int64_t n, std::int64_t target_dims) {
  return target_dims > 0 ? torch::empty({n, target_dims}, torch::kFloat)
                         : torch::empty({n}, torch::kInt64);
}

}  // namespace

struct Trainer::Impl {
  TrainerOptions options;
  std::shared_ptr<const DataSplit> data;
  torch::Device device = torch::kCPU;
  Net model;
  torch::Tensor flat_params;
  torch::Tensor flat_grads;
  torch::Tensor flat_buffers;       // the fp32 buffers (empty tensor: none)
  std::uint64_t dropout_seed = 0;   // of this trainer's Dropout stream (see the header)
  std::uint64_t batches_drawn = 0;  // training batches started or skipped so far
  std::uint64_t batch_seed = 0;     // the Dropout seed of the current training batch

  // This worker's training samples, gathered once.
  torch::Tensor train_x;         // N x C x H x W
  torch::Tensor train_y;         // N (regression: N x T)
  std::int64_t target_dims = 0;  // regression targets per sample (0: class labels)
  std::int64_t num_train = 0;
  std::int64_t batch = 0;  // min(batch_size, num_train)

  // Batch order: one stream per block with per-block batches, else one over all local samples.
  // Each stream is a permutation of its samples per pass, consumed batch by batch.
  struct Stream {
    std::int64_t offset = 0;  // first local sample of the stream
    std::int64_t size = 0;
    std::int64_t batch = 0;  // min(batch_size, size)
    std::uint64_t seed = 0;  // of the stream; each pass derives its own
    std::vector<std::int64_t> order;
    std::size_t cursor = 0;
    std::uint64_t pass = 0;
  };
  std::vector<Stream> streams;
  std::size_t next_stream = 0;
  torch::Tensor batch_index;  // batch (int64), filled from `order`
  torch::Tensor batch_x;
  torch::Tensor batch_y;

  // The width of the model's output: classes, C*H*W for reconstruction, or the targets.
  std::int64_t outputs(const Dataset& t) const {
    if (options.target == "xx") return t.sample_numel();
    if (options.target == "regression") return t.target_dims;
    return std::max(data->train.num_classes, data->test.num_classes);
  }

  // The network named by the options, with its initial weights (built-ins: from `seed`).
  Net make_net(const Dataset& t) const {
    const std::string path = ModelOptions{.model = options.model}.script_path();
    if (path.empty()) {
      return Net(
          make_model(options.model, t.channels, t.height, t.width, static_cast<int>(outputs(t))));
    }
    const std::string bytes = options.script ? *options.script : read_script(options.model, path);
    return Net(load_script(bytes, "--model " + options.model));
  }

  void build_model() {
    const Dataset& t = data->train.size() > 0 ? data->train : data->test;
    {
      std::lock_guard<std::mutex> lock(generator_mutex());
      torch::manual_seed(options.seed);
      model = make_net(t);
    }
    check_shapes(t);
    model.train(true);

    torch::NoGradGuard no_grad;
    const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
    std::int64_t total = 0;
    for (const auto& [name, p] : model.named_parameters())
      total += p.numel();
    if (total == 0) {
      throw ConfigError(fmt::format(
          "--model {}: the module has no trainable parameters (none with requires_grad): nothing "
          "to train",
          options.model));
    }
    flat_params = torch::empty({total}, opts);
    flat_grads = torch::zeros({total}, opts);
    std::int64_t offset = 0;
    for (auto& [name, p] : model.named_parameters()) {
      const std::int64_t n = p.numel();
      auto view = flat_params.narrow(0, offset, n).view(p.sizes());
      view.copy_(p.detach());
      p.set_data(view);
      p.mutable_grad() = flat_grads.narrow(0, offset, n).view(p.sizes());
      offset += n;
    }
    // fp32 buffers likewise, into their own flat tensor.
    std::int64_t buffer_total = 0;
    for (const auto& [name, b] : model.named_buffers())
      if (b.scalar_type() == torch::kFloat) buffer_total += b.numel();
    flat_buffers = torch::empty({buffer_total}, opts);
    offset = 0;
    for (auto& [name, b] : model.named_buffers()) {
      if (b.scalar_type() != torch::kFloat) continue;
      const std::int64_t n = b.numel();
      auto view = flat_buffers.narrow(0, offset, n).view(b.sizes());
      view.copy_(b.detach());
      b.set_data(view);
      offset += n;
    }
    dropout_seed = derive_seed(options.seed, kDropoutStream + options.batch_stream);
  }

  // One forward pass on two samples, in evaluation mode: does the model take the data and give
  // the outputs the target needs? One line naming the model and the shapes otherwise.
  void check_shapes(const Dataset& t) {
    const auto n = std::min<std::int64_t>(2, static_cast<std::int64_t>(t.size()));
    if (n == 0) return;
    const std::int64_t want = outputs(t);
    auto [x, y] = view_of(t, 0, n);
    const std::string input = fmt::format("{} x {} x {} x {}", n, t.channels, t.height, t.width);
    torch::Tensor out;
    {
      torch::NoGradGuard no_grad;
      model.train(false);
      try {
        out = model.forward(x);
      } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("--model {}: {}", options.model, e.what()));
      } catch (const std::exception& e) {
        throw ConfigError(fmt::format(
            "--model {}: a forward pass on a batch of {} (the data's N x C x H x W{}) fails: {}",
            options.model, input,
            t.height == 1 && t.channels == 1
                ? "; tabular rows are N x 1 x 1 x F: start the model with nn.Flatten()"
                : "",
            torch_reason(e)));
      }
    }
    const std::string what = options.target == "xx"           ? "values per sample to reconstruct"
                             : options.target == "regression" ? "regression targets per sample"
                                                              : "classes";
    if (out.dim() != 2 || out.size(0) != n || out.size(1) != want) {
      throw ConfigError(fmt::format(
          "--model {}: its output for a batch of {} has shape {}, but the data has {} {}: it "
          "must be [{} x {}]",
          options.model, input, shape_text(out), want, what, n, want));
    }
    if (out.scalar_type() != torch::kFloat) {
      throw ConfigError(fmt::format("--model {}: its output is {}, not float32", options.model,
                                    c10::toString(out.scalar_type())));
    }
  }

  void gather_train(const std::vector<std::int64_t>& indices) {
    const Dataset& t = data->train;
    num_train = static_cast<std::int64_t>(indices.size());
    const std::int64_t numel = t.sample_numel();
    train_x = torch::empty({num_train, t.channels, t.height, t.width}, torch::kFloat);
    train_y = empty_labels(num_train, target_dims);
    float* x = train_x.data_ptr<float>();
    std::int64_t* y = target_dims > 0 ? nullptr : train_y.data_ptr<std::int64_t>();
    float* ty = target_dims > 0 ? train_y.data_ptr<float>() : nullptr;
    for (std::int64_t i = 0; i < num_train; ++i) {
      const std::int64_t s = indices[i];
      if (s < 0 || s >= static_cast<std::int64_t>(t.size())) {
        throw ConfigError(fmt::format("training sample index {} outside {} ({} samples)", s,
                                      t.name.empty() ? "the training set" : t.name, t.size()));
      }
      std::memcpy(x + i * numel, t.images.data() + s * numel, sizeof(float) * numel);
      if (ty != nullptr) {
        std::memcpy(ty + i * target_dims, t.targets.data() + s * target_dims,
                    sizeof(float) * target_dims);
      } else {
        y[i] = t.labels[s];
      }
    }
    batch = std::min<std::int64_t>(options.batch_size, num_train);
    make_streams();
    batch_index = torch::empty({batch}, torch::kInt64);
    batch_x = torch::empty({batch, t.channels, t.height, t.width}, torch::kFloat);
    batch_y = empty_labels(batch, target_dims);
  }

  // Mean loss of a batch; `reduction` sum for evaluation.
  torch::Tensor loss(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y,
                     bool sum) const {
    namespace F = torch::nn::functional;
    if (options.target == "xx" || options.target == "regression") {
      const auto target = options.target == "xx" ? x.reshape({x.size(0), -1}) : y;
      return sum ? F::mse_loss(out, target, F::MSELossFuncOptions().reduction(torch::kSum)) /
                       static_cast<double>(target.size(1))
                 : F::mse_loss(out, target);
    }
    return sum ? F::cross_entropy(out, y, F::CrossEntropyFuncOptions().reduction(torch::kSum))
               : F::cross_entropy(out, y);
  }

  struct Scores {
    double loss = 0;
    double accuracy = 0;
    std::optional<double> rmse, r2;
  };

  // Mean loss and accuracy (regression: RMSE and R^2) over a whole dataset, in chunks.
  Scores evaluate(const Dataset& d) {
    const auto n = static_cast<std::int64_t>(d.size());
    const bool regression = options.target == "regression";
    double loss_sum = 0.0;
    std::int64_t correct = 0;
    // Regression: squared errors, and each target column's sum and sum of squares (for SST), in
    // double.
    double sse = 0.0;
    torch::Tensor col_sum = torch::zeros({std::max<std::int64_t>(target_dims, 1)}, torch::kDouble);
    torch::Tensor col_sq = torch::zeros_like(col_sum);
    for (std::int64_t first = 0; first < n; first += kEvalChunk) {
      const std::int64_t count = std::min(kEvalChunk, n - first);
      auto [x, y] = view_of(d, first, count);
      torch::Tensor out;
      try {
        out = model.forward(x);
        loss_sum += loss(out, x, y, true).item<double>();
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        // A model that passed the start's check (a batch of 2) may still refuse another batch
        // size: one line naming it, not torch's traceback.
        throw Error(
            fmt::format("--model {}: the evaluation's forward pass on a batch of {} failed: {}",
                        options.model, count, torch_reason(e)));
      }
      if (regression) {
        const auto yd = y.to(torch::kDouble);
        sse += (out.to(torch::kDouble) - yd).square().sum().item<double>();
        col_sum += yd.sum(0);
        col_sq += yd.square().sum(0);
      } else if (options.target != "xx") {
        correct += out.argmax(1).eq(y).sum().item<std::int64_t>();
      }
    }
    Scores s;
    s.loss = loss_sum / static_cast<double>(n);
    s.accuracy = options.target == "xy" ? static_cast<double>(correct) / static_cast<double>(n)
                                        : std::numeric_limits<double>::quiet_NaN();
    if (regression) {
      const double values = static_cast<double>(n * target_dims);
      s.rmse = std::sqrt(sse / values);
      const double sst = (col_sq - col_sum.square() / static_cast<double>(n)).sum().item<double>();
      s.r2 = sst > 0 ? 1.0 - sse / sst : std::numeric_limits<double>::quiet_NaN();
    }
    return s;
  }

  // A training forward pass, with torch's default generator seeded for the current batch.
  torch::Tensor train_forward(const torch::Tensor& x) {
    return with_own_generator([&] { return model.forward(x); });
  }

  // Runs `forward` with torch's default generator seeded with the current batch's Dropout seed,
  // then gives the generator its previous state back (see the header).
  template <typename F>
  torch::Tensor with_own_generator(F&& forward) {
    std::lock_guard<std::mutex> lock(generator_mutex());
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    torch::Tensor saved;
    {
      std::lock_guard<std::mutex> g(gen.mutex());
      saved = gen.get_state();
      gen.set_current_seed(batch_seed);
    }
    auto restore = [&] {
      std::lock_guard<std::mutex> g(gen.mutex());
      gen.set_state(saved);
    };
    torch::Tensor out;
    try {
      out = forward();
    } catch (...) {
      restore();
      throw;
    }
    restore();
    return out;
  }

  // Staged backward (Learner::begin_gradient). The forward pass of the built-in Sequential cuts
  // the graph before the children at the cuts: their input is a detached copy that requires a
  // gradient (ins), the tensor it was cut from is kept (outs). continue_backward() runs the
  // loss's backward first (down to the last cut), then each earlier piece from its output with
  // the gradient its detached input received: the same kernels on the same values as one
  // backward pass, so the same bits.
  struct Staged {
    torch::Tensor loss;
    std::vector<torch::Tensor> outs, ins;  // per cut, in forward order
    std::vector<std::size_t> at;           // per cut, its gradient offset
    int next = -1;                         // the piece continue_backward() runs; -1: none
  } staged;

  // Per child of the built-in Sequential, the flat offset of its first parameter, and whether it
  // has any.
  std::vector<std::pair<std::size_t, bool>> child_offsets() const {
    std::vector<std::pair<std::size_t, bool>> v;
    std::size_t offset = 0;
    for (const auto& child : model.builtin()->children()) {
      std::size_t n = 0;
      for (const auto& p : child->parameters())
        n += static_cast<std::size_t>(p.numel());
      v.emplace_back(offset, n > 0);
      offset += n;
    }
    return v;
  }

  void make_streams() {
    auto add = [&](std::int64_t offset, std::int64_t size, std::uint64_t seed) {
      Stream st{.offset = offset,
                .size = size,
                .batch = std::min<std::int64_t>(options.batch_size, size),
                .seed = seed};
      st.order.resize(static_cast<std::size_t>(size));
      st.cursor = st.order.size();  // the first batch starts pass 0
      streams.push_back(std::move(st));
    };
    if (options.block_ids.empty() && options.block_sizes.empty()) {
      add(0, num_train, derive_seed(options.seed, kBatchOrderStream + options.batch_stream));
      return;
    }
    if (options.block_ids.size() != options.block_sizes.size()) {
      throw ConfigError(fmt::format("{} block ids but {} block sizes", options.block_ids.size(),
                                    options.block_sizes.size()));
    }
    std::int64_t offset = 0;
    for (std::size_t b = 0; b < options.block_ids.size(); ++b) {
      const std::int64_t size = options.block_sizes[b];
      if (size < 1) {
        throw ConfigError(fmt::format("block {} has no samples", options.block_ids[b]));
      }
      add(offset, size,
          derive_seed(options.seed,
                      kBlockOrderStream + static_cast<std::uint64_t>(options.block_ids[b])));
      offset += size;
    }
    if (offset != num_train) {
      throw ConfigError(fmt::format("the blocks hold {} samples but the trainer was given {}",
                                    offset, num_train));
    }
  }

  static void next_pass(Stream& st) {
    std::iota(st.order.begin(), st.order.end(), st.offset);
    Rng rng(derive_seed(st.seed, st.pass));
    shuffle(std::span<std::int64_t>(st.order), rng);
    ++st.pass;
    st.cursor = 0;
  }

  // The next batch of `st`: the whole stream when it is no larger than a batch, else batch_x /
  // batch_y filled with the next st.batch samples of its batch order.
  std::pair<torch::Tensor, torch::Tensor> next_batch(Stream& st) {
    if (st.batch == st.size) {
      return {train_x.narrow(0, st.offset, st.size), train_y.narrow(0, st.offset, st.size)};
    }
    if (batch_index.size(0) != st.batch) {
      batch_index = torch::empty({st.batch}, torch::kInt64);
      batch_x = torch::empty({st.batch, train_x.size(1), train_x.size(2), train_x.size(3)},
                             torch::kFloat);
      batch_y = empty_labels(st.batch, target_dims);
    }
    auto* idx = batch_index.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < st.batch; ++i) {
      if (st.cursor == st.order.size()) next_pass(st);
      idx[i] = st.order[st.cursor++];
    }
    torch::index_select_out(batch_x, train_x, 0, batch_index);
    torch::index_select_out(batch_y, train_y, 0, batch_index);
    return {batch_x, batch_y};
  }

  // A training step's start, staged or not: the next stream's batch (the streams take turns), the
  // model in training mode and the gradient zeroed. Returns the batch's inputs, labels and size.
  std::tuple<torch::Tensor, torch::Tensor, std::int64_t> start_step() {
    if (num_train == 0) throw Error("compute_gradient: this trainer has no training samples");
    Stream& st = streams[next_stream];
    next_stream = (next_stream + 1) % streams.size();
    batch_seed = derive_seed(dropout_seed, batches_drawn++);
    auto [x, y] = next_batch(st);
    model.train(true);
    flat_grads.zero_();
    return {x, y, st.batch};
  }

  // A training step torch refused: one line naming the model and the batch size.
  Error step_failed(std::int64_t batch, const std::exception& e) const {
    return Error(fmt::format("--model {}: the training step on a batch of {} failed: {}",
                             options.model, batch, torch_reason(e)));
  }
};

Trainer::Trainer(TrainerOptions options, std::shared_ptr<const DataSplit> data,
                 std::vector<std::int64_t> train_indices)
    : impl_(std::make_unique<Impl>()) {
  if (!data) throw ConfigError("Trainer needs a dataset");
  if (options.batch_size < 1) {
    throw ConfigError(fmt::format("batch size must be at least 1, got {}", options.batch_size));
  }
  if (data->train.size() == 0 && data->test.size() == 0) {
    throw ConfigError("Trainer needs a dataset with training or test samples");
  }
  impl_->options = std::move(options);
  impl_->data = std::move(data);
  const std::string& target = impl_->options.target;
  if (target != "xy" && target != "xx" && target != "regression") {
    throw ConfigError(
        fmt::format("unknown target '{}': expected xy, xx or regression", impl_->options.target));
  }
  const Dataset& shape = impl_->data->train.size() > 0 ? impl_->data->train : impl_->data->test;
  if ((target == "regression") != (shape.target_dims > 0)) {
    throw ConfigError(target == "regression"
                          ? "--target regression: the data have class labels, not float targets"
                          : fmt::format("--target {}: the data have float regression targets "
                                        "(use --target regression)",
                                        target));
  }
  impl_->target_dims = shape.target_dims;
  impl_->device = pick_device(impl_->options.device);
  impl_->build_model();
  impl_->gather_train(train_indices);
}

Trainer::~Trainer() = default;

std::span<float> Trainer::parameters() {
  return {impl_->flat_params.data_ptr<float>(),
          static_cast<std::size_t>(impl_->flat_params.numel())};
}

std::span<const float> Trainer::gradients() const {
  return {impl_->flat_grads.data_ptr<float>(), static_cast<std::size_t>(impl_->flat_grads.numel())};
}

StepStats Trainer::compute_gradient() {
  Impl& m = *impl_;
  auto [x, y, batch] = m.start_step();
  try {
    auto loss = m.loss(m.train_forward(x), x, y, false);
    loss.backward();
    return {loss.item<double>(), batch};
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // A model that runs on the check's two samples may still fail in training mode (BatchNorm on
    // a batch of one sample): one line, not a crash.
    throw m.step_failed(batch, e);
  }
}

std::vector<std::size_t> Trainer::backward_cuts() const {
  std::vector<std::size_t> cuts;
  if (impl_->model.scripted()) return cuts;
  for (const auto& [offset, has] : impl_->child_offsets())
    if (has && offset > 0) cuts.insert(cuts.begin(), offset);
  return cuts;
}

StepStats Trainer::begin_gradient(std::span<const std::size_t> cuts) {
  Impl& m = *impl_;
  m.staged = {};
  if (cuts.empty() || m.model.scripted()) return compute_gradient();
  // The child each cut is taken before: the one whose parameters start there.
  const auto offsets = m.child_offsets();
  std::vector<std::size_t> cut_child;
  for (auto c = cuts.rbegin(); c != cuts.rend(); ++c) {
    std::size_t i = 0;
    while (i < offsets.size() && !(offsets[i].second && offsets[i].first == *c))
      ++i;
    PSGD_CHECK(i < offsets.size() && i > 0, "begin_gradient: {} is not a backward cut", *c);
    cut_child.push_back(i);
    m.staged.at.push_back(*c);
  }
  auto [x, y, batch] = m.start_step();
  try {
    torch::nn::Sequential seq = m.model.builtin();
    const torch::Tensor out = m.with_own_generator([&] {
      torch::Tensor h = x;
      std::size_t i = 0;
      std::size_t next_cut = 0;
      for (torch::nn::AnyModule& child : *seq) {
        if (next_cut < cut_child.size() && cut_child[next_cut] == i) {
          m.staged.outs.push_back(h);
          m.staged.ins.push_back(h.detach().requires_grad_(true));
          h = m.staged.ins.back();
          ++next_cut;
        }
        h = child.forward(h);
        ++i;
      }
      return h;
    });
    m.staged.loss = m.loss(out, x, y, false);
    m.staged.next = static_cast<int>(cut_child.size());
    return {m.staged.loss.item<double>(), batch};
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    m.staged = {};
    throw m.step_failed(batch, e);
  }
}

std::size_t Trainer::continue_backward() {
  Impl& m = *impl_;
  Impl::Staged& s = m.staged;
  if (s.next < 0) return 0;
  try {
    const auto k = static_cast<std::size_t>(s.next);
    if (k == s.ins.size()) {
      s.loss.backward();
    } else {
      torch::autograd::backward({s.outs[k]}, {s.ins[k].grad()});
    }
  } catch (const std::exception& e) {
    s = {};
    throw Error(
        fmt::format("--model {}: the backward pass failed: {}", m.options.model, torch_reason(e)));
  }
  if (s.next == 0) {
    s = {};
    return 0;
  }
  return s.at[static_cast<std::size_t>(--s.next)];
}

void Trainer::skip_batches(std::int64_t count) {
  Impl& m = *impl_;
  if (count <= 0 || m.num_train == 0) return;
  m.batches_drawn += static_cast<std::uint64_t>(count);
  for (std::int64_t b = 0; b < count; ++b) {
    Impl::Stream& st = m.streams[m.next_stream];
    m.next_stream = (m.next_stream + 1) % m.streams.size();
    if (st.batch == st.size) continue;  // every batch is the whole stream
    for (std::int64_t i = 0; i < st.batch; ++i) {
      if (st.cursor == st.order.size()) Impl::next_pass(st);
      ++st.cursor;
    }
  }
}

EvalStats Trainer::evaluate() {
  Impl& m = *impl_;
  const Dataset& test = m.data->test;
  const Dataset& validation = m.data->validation;
  EvalStats stats;
  if (test.size() == 0 && validation.size() == 0) return stats;
  torch::NoGradGuard no_grad;
  m.model.train(false);
  if (test.size() > 0) {
    const Impl::Scores s = m.evaluate(test);
    stats.loss = s.loss;
    stats.accuracy = s.accuracy;
    stats.rmse = s.rmse;
    stats.r2 = s.r2;
    stats.samples = static_cast<std::int64_t>(test.size());
  }
  if (validation.size() > 0) {
    const Impl::Scores s = m.evaluate(validation);
    stats.validation_loss = s.loss;
    stats.validation_accuracy = s.accuracy;
    stats.validation_rmse = s.rmse;
    stats.validation_r2 = s.r2;
  }
  m.model.train(true);
  return stats;
}

std::span<float> Trainer::buffers() {
  return {impl_->flat_buffers.data_ptr<float>(),
          static_cast<std::size_t>(impl_->flat_buffers.numel())};
}

std::size_t Trainer::num_buffers() const {
  return static_cast<std::size_t>(impl_->flat_buffers.numel());
}

torch::nn::Sequential TrainerAccess::module(Trainer& trainer) {
  return trainer.impl_->model.builtin();
}

Net& TrainerAccess::net(Trainer& trainer) {
  return trainer.impl_->model;
}

std::size_t Trainer::num_parameters() const {
  return static_cast<std::size_t>(impl_->flat_params.numel());
}

std::vector<std::uint64_t> Trainer::tensor_sizes() const {
  std::vector<std::uint64_t> sizes;
  for (const auto& [name, p] : impl_->model.named_parameters())
    sizes.push_back(static_cast<std::uint64_t>(p.numel()));
  return sizes;
}

std::vector<std::uint64_t> Trainer::tensor_rows() const {
  std::vector<std::uint64_t> rows;
  for (const auto& [name, p] : impl_->model.named_parameters())
    rows.push_back(p.dim() == 0 ? 1 : static_cast<std::uint64_t>(p.size(0)));
  return rows;
}

std::size_t Trainer::num_train_samples() const {
  return static_cast<std::size_t>(impl_->num_train);
}

std::string Trainer::describe() const {
  const std::size_t buffers = num_buffers();
  return fmt::format(
      "{}: {} parameters{}", impl_->options.model, group_thousands(num_parameters()),
      buffers > 0 ? fmt::format(", {} buffer values", group_thousands(buffers)) : std::string());
}

void Trainer::save(const std::string& dir, const std::string& tag) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(fmt::format("cannot write {}: {}", dir, ec.message()));
  const fs::path model_path = fs::path(dir) / fmt::format("model{}.pt", tag);
  const fs::path dict_path = fs::path(dir) / fmt::format("state_dict{}.pt", tag);
  // Both are serialised in memory and written whole (core/files.h): libtorch's own file writer
  // reports a full disk by throwing, at worst from a destructor (std::terminate), and leaves a
  // truncated file behind.
  std::ostringstream archive;
  try {
    impl_->model.save(archive);
  } catch (const c10::Error& e) {
    throw IoError(
        fmt::format("cannot write {}: {}", model_path.string(), e.what_without_backtrace()));
  }
  write_file_atomic(model_path.string(), std::string_view(archive.view()));

  c10::Dict<std::string, at::Tensor> dict;
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, p] : impl_->model.named_parameters())
      dict.insert(name, p.detach().clone().cpu());
    for (const auto& [name, b] : impl_->model.named_buffers())
      dict.insert(name, b.detach().clone().cpu());
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(dict_path.string(), std::string_view(bytes.data(), bytes.size()));
}

void Trainer::load(const std::string& dir, const std::string& tag) {
  namespace fs = std::filesystem;
  const fs::path model_path = fs::path(dir) / fmt::format("model{}.pt", tag);
  if (!fs::exists(model_path)) {
    throw IoError(fmt::format("{}: no such file (a run writes it when training completes)",
                              model_path.string()));
  }
  // Loaded into a fresh module, then copied: loading replaces a parameter's storage, and this
  // trainer's parameters must stay views into its flat parameter tensor.
  const Dataset& t = impl_->data->train.size() > 0 ? impl_->data->train : impl_->data->test;
  Net saved;
  try {
    if (impl_->model.scripted()) {
      saved = Net(torch::jit::load(model_path.string(), torch::kCPU));
    } else {
      torch::nn::Sequential module = make_model(impl_->options.model, t.channels, t.height, t.width,
                                                static_cast<int>(impl_->outputs(t)));
      torch::load(module, model_path.string());
      saved = Net(module);
    }
  } catch (const std::exception& e) {
    throw IoError(fmt::format("cannot read {} as a {} model: {}", model_path.string(),
                              impl_->options.model, torch_reason(e)));
  }
  torch::NoGradGuard no_grad;
  auto copy = [&](const auto& from, const auto& to, const char* what) {
    if (from.size() != to.size()) {
      throw ConfigError(fmt::format("{} holds {} {} but model {} has {}", model_path.string(),
                                    from.size(), what, impl_->options.model, to.size()));
    }
    std::map<std::string, torch::Tensor> by_name(from.begin(), from.end());
    for (const auto& [name, tensor] : to) {
      auto it = by_name.find(name);
      if (it == by_name.end() || !it->second.sizes().equals(tensor.sizes())) {
        throw ConfigError(fmt::format("{}: {} {} is missing or has another shape",
                                      model_path.string(), what, name));
      }
      tensor.copy_(it->second);
    }
  };
  copy(saved.named_parameters(), impl_->model.named_parameters(), "parameters");
  copy(saved.named_buffers(), impl_->model.named_buffers(), "buffers");
}

}  // namespace psgd::nn
