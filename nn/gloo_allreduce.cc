#include "nn/gloo_allreduce.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>

#include "core/error.h"

namespace psgd::nn {
namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

}  // namespace

struct GlooStoreHost::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

GlooStoreHost::GlooStoreHost(int world, int port, double timeout_s) : impl_(new Impl) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = true;
  o.numWorkers = static_cast<std::size_t>(world);
  o.waitWorkers = false;  // the ranks join when the group is built
  o.timeout = millis(timeout_s);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>("0.0.0.0", o);
  } catch (const std::exception& e) {
    throw IoError(fmt::format("gloo: cannot host the rendezvous store: {}", e.what()));
  }
}

GlooStoreHost::~GlooStoreHost() = default;

int GlooStoreHost::port() const {
  return impl_->store->getPort();
}

struct GlooAllreduce::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  int rank = 0;
};

GlooAllreduce::GlooAllreduce(const GlooOptions& options, GlooStoreHost* host) : impl_(new Impl) {
  impl_->rank = options.rank;
  try {
    if (host != nullptr) {
      impl_->store = host->impl_->store;
    } else {
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(options.store_port);
      o.isServer = false;
      o.timeout = millis(options.timeout_s);
      impl_->store = c10::make_intrusive<c10d::TCPStore>(options.store_host, o);
    }
    auto opts = c10d::ProcessGroupGloo::Options::create(millis(options.timeout_s));
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.bind_host));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options.rank,
                                                               options.world, opts);
  } catch (const std::exception& e) {
    throw IoError(fmt::format("gloo rank {} of {}: cannot join the group at {}:{}: {}",
                              options.rank, options.world, options.store_host, options.store_port,
                              e.what()));
  }
}

GlooAllreduce::~GlooAllreduce() = default;

void GlooAllreduce::allreduce_sum(std::span<float> data) {
  std::vector<at::Tensor> tensors{
      torch::from_blob(data.data(), {static_cast<std::int64_t>(data.size())}, torch::kFloat32)};
  try {
    impl_->group->allreduce(tensors)->wait();
  } catch (const std::exception& e) {
    throw IoError(fmt::format("gloo rank {}: allreduce failed: {}", impl_->rank, e.what()));
  }
}

}  // namespace psgd::nn
