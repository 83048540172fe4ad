#pragma once
// Codec: how a vector of floats (a gradient, or parameters on the way down) travels on the wire.
//
// Contract
//   encode_into(values, out)    out = the encoding of values. Reuses out.bytes' capacity, so a
//                                  sender that keeps one Payload and encodes into it again and
//                                  again allocates (and page-faults) nothing in the steady state;
//                                  whatever out held before is overwritten. May keep state between
//                                  calls (error feedback keeps a residual, random-k a step
//                                  counter), so a Codec instance belongs to one sender.
//   encode(values)              -> Payload: encode_into a fresh Payload.
//   decode_add(p, acc, weight)     acc += weight * decode(p). Never reads or writes out of bounds:
//                                  a payload whose size does not match acc or its own header is
//                                  refused with ProtocolError, because payloads come from peers.
//   decode(p, out)              -> out = decode(p); the default zeroes out and calls decode_add.
//   last_stats()                -> what the codec measured about its last encode for free (the
//                                  error-feedback decorator knows its compression error); fields
//                                  it did not measure stay negative.
//   state() / restore_state(s)  -> what encode carries from one call to the next (an
//                                  error-feedback residual, a momentum buffer, the position of a
//                                  random stream or a warm-up), as bytes (core/state_io.h), so a
//                                  sender can be checkpointed and continue bit for bit. Stateless
//                                  codecs keep the defaults: empty state, and restore_state()
//                                  accepts only empty state. restore_state() throws ProtocolError
//                                  for state that does not fit this codec (another codec, another
//                                  vector length, truncated bytes).
//
// Threading: one thread at a time per instance. Codecs see flat float spans only, never torch.
// Build codecs with make_codec() (codecs/factory.h); there is no self-registration.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/payload.h"

namespace psgd {

// Measurements of the last encode(). Negative means "not measured".
struct CodecStats {
  double compression_error = -1;  // ‖g − D(C(g))‖ / ‖g‖ of the vector handed to encode()
};

class Codec {
 public:
  virtual ~Codec() = default;

  virtual std::string_view name() const = 0;

  virtual void encode_into(std::span<const float> values, Payload& out) = 0;

  Payload encode(std::span<const float> values) {
    Payload p;
    encode_into(values, p);
    return p;
  }

  virtual void decode_add(const Payload& payload, std::span<float> acc, float weight) const = 0;

  virtual void decode(const Payload& payload, std::span<float> out) const;

  // The decoded vector of `num_elements` values without decoding, when the payload holds it as
  // it is (plain fp32, float-aligned in memory); empty otherwise. It views the payload, so it is
  // valid for as long as the payload is. Throws ProtocolError like decode() for a payload of the
  // wrong size.
  virtual std::span<const float> view_decoded(const Payload& payload,
                                              std::size_t num_elements) const {
    (void)payload;
    (void)num_elements;
    return {};
  }

  virtual CodecStats last_stats() const { return {}; }

  virtual std::vector<std::uint8_t> state() const { return {}; }
  virtual void restore_state(std::span<const std::uint8_t> state);
};

}  // namespace psgd
