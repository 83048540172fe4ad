// libFuzzer: every message body decoder (network/messages.h). The first input byte picks the
// message type; the rest is the body. Anything that decodes is encoded and decoded again and must
// give the same bytes the second time (the encoding of a decoded message is canonical).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "network/messages.h"

namespace {
constexpr std::array kTypes{psgd::MessageType::kError,         psgd::MessageType::kHello,
                            psgd::MessageType::kJob,           psgd::MessageType::kReady,
                            psgd::MessageType::kFinish,        psgd::MessageType::kDataOffer,
                            psgd::MessageType::kDataChunk,     psgd::MessageType::kAuthHello,
                            psgd::MessageType::kAuthChallenge, psgd::MessageType::kAuthProof,
                            psgd::MessageType::kHeartbeat,     psgd::MessageType::kParams,
                            psgd::MessageType::kGradient,      psgd::MessageType::kModelDelta,
                            psgd::MessageType::kAuthOk,        psgd::MessageType::kPeerTable,
                            psgd::MessageType::kPeerHello,     psgd::MessageType::kPeersUp,
                            psgd::MessageType::kRingChunk,     psgd::MessageType::kAllreduceReport,
                            psgd::MessageType::kPeerGradient};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto type = kTypes[data[0] % kTypes.size()];
  try {
    const psgd::Message m = psgd::decode_body(type, {data + 1, size - 1});
    if (psgd::type_of(m) != type) std::abort();
    const auto once = psgd::encode_body(m);
    const auto twice = psgd::encode_body(psgd::decode_body(type, once));
    if (once != twice) std::abort();
  } catch (const psgd::ProtocolError&) {
  }
  return 0;
}
