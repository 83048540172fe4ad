// libFuzzer: a checkpoint file as init_server --resume reads it (psgd/checkpoint.h), then the
// ssgd server state inside it. Any input must end in CheckpointError / Error, never in a crash,
// a leak, an out-of-bounds access or an allocation larger than the input allows.
//
// Random bytes almost never match the SHA-256 in the file, which would leave the body decoder
// unexplored; so every input is tried twice: as it is, and with its digest recomputed over the
// bytes that follow it.
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "psgd/checkpoint.h"
#include "psgd/ssgd.h"

namespace {

constexpr std::size_t kPrefix = 24;  // magic, format, protocol, length

void load(std::span<const std::uint8_t> bytes) {
  try {
    const psgd::Checkpoint c = psgd::decode_checkpoint(bytes);
    psgd::check_matches(c, c.header);
    // The strategy state, into a server of the checkpoint's size (bounded: the parameters are
    // in the input, so their count is too).
    std::vector<float> params(c.parameters);
    psgd::SteadyClock clock;
    psgd::SsgdServer server(psgd::Schedule{.node_count = 2, .iterations_per_epoch = 8, .epochs = 2},
                            psgd::ServerContext{.parameters = params,
                                                .optimizer = psgd::OptimizerSpec{.momentum = 0.9},
                                                .clock = &clock});
    server.restore(c.role_state);
    (void)server.worker_batches(1);
  } catch (const psgd::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  load({data, size});
  if (size >= kPrefix + SHA256_DIGEST_LENGTH) {
    std::vector<std::uint8_t> fixed(data, data + size);
    SHA256(fixed.data() + kPrefix + SHA256_DIGEST_LENGTH, size - kPrefix - SHA256_DIGEST_LENGTH,
           fixed.data() + kPrefix);
    load(fixed);
  }
  return 0;
}
