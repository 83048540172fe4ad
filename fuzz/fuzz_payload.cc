// libFuzzer: a gradient payload from a peer, decoded by every codec the server can be configured
// with (codecs/codec.h: decode_add never reads or writes out of bounds and refuses a payload that
// does not match its header with ProtocolError). Input: a codec selector byte, a length byte for
// the vector, then the payload bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "codecs/factory.h"
#include "core/error.h"
#include "fuzz/codec_specs.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<psgd::CodecSpec> specs = psgd::fuzz::codec_specs();
  if (size < 2) return 0;
  const auto& spec = specs[data[0] % specs.size()];
  const std::size_t n = data[1];
  static std::vector<std::unique_ptr<psgd::Codec>> codecs;
  if (codecs.empty()) {
    for (const auto& s : specs)
      codecs.push_back(psgd::make_codec(s));
  }
  psgd::Payload p{.num_elements = n, .bytes = {data + 2, data + size}};
  std::vector<float> acc(n, 0.0f);
  try {
    codecs[data[0] % specs.size()]->decode_add(p, acc, 0.5f);
  } catch (const psgd::ProtocolError&) {
  }
  (void)spec;
  return 0;
}
