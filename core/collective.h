#pragma once
// A blocking collective over the workers of a job: the seam between the allreduce strategy and an
// engine that runs the exchange itself (Gloo through c10d in nn/gloo_allreduce.h; TcpRing here).
//
// Contract: every rank calls allreduce_sum() with a buffer of the same length, in the same order;
// on return each rank's buffer holds the element-wise sum over the ranks (identical bits on every
// rank). A rank that fails or disappears makes the others throw psgd::Error, not hang. One thread
// at a time.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "core/error.h"

namespace psgd {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual void allreduce_sum(std::span<float> data) = 0;
  // out = (the element-wise sum over the ranks of their `in`) * scale: the sum rounded first,
  // then the product, so the bits are those of allreduce_sum() followed by the multiplication.
  // `in` is left as it is. This default copies `in` into `out`; a backend that reads `in` and
  // writes `out` itself (net::ShmAllreduce) saves two passes over the buffer.
  virtual void allreduce_scaled(std::span<const float> in, std::span<float> out, float scale) {
    PSGD_CHECK(out.size() == in.size(), "allreduce_scaled: {} values in, {} out", in.size(),
               out.size());
    std::copy(in.begin(), in.end(), out.begin());
    allreduce_sum(out);
    if (scale != 1.0f) {
      for (float& x : out)
        x *= scale;
    }
  }
  virtual std::string name() const = 0;
  // Bytes one rank sends to its peers over the network per allreduce of `bytes` among `world`
  // ranks (summary.json's peer bytes). Default: a ring's 2(n-1)/n of the buffer (Gloo's).
  virtual std::uint64_t peer_bytes(std::uint64_t bytes, int world) const {
    const auto n = static_cast<std::uint64_t>(world);
    return n == 0 ? 0 : 2 * (n - 1) * bytes / n;
  }
  // Whether an allreduce in progress ends soon once its owner's run is over (it checks an
  // interrupt while it waits). Default: no, it runs until its peers answer or its timeout (Gloo).
  virtual bool interruptible() const { return false; }
};

}  // namespace psgd
