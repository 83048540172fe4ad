#pragma once
// The sparse wire format shared by topk (codecs/topk.h): k (index, value) pairs with the indices
// in whichever of two encodings is smaller.
//
// Wire format (Payload.bytes), little-endian:
//   uint8   tag                  0: delta-coded indices, 1: bitmap
//   uint64  k                    number of kept coordinates (k <= num_elements)
//   float32 values[k]            in increasing index order
//   tag 0:  k LEB128 varints     the first index, then each index minus the previous minus 1
//   tag 1:  ceil(num_elements/8) bytes; bit (i % 8) of byte (i / 8) set iff coordinate i is kept;
//           exactly k bits set, padding bits 0
// The encoder picks the smaller index section; on a tie, delta.
#include <cstdint>
#include <span>

#include "codecs/codec.h"

namespace psgd::sparse {

enum class IndexEncoding : std::uint8_t { kDelta = 0, kBitmap = 1 };

// The encoding encode() would choose for these indices (strictly increasing, < n).
IndexEncoding choose_encoding(std::uint64_t n, std::span<const std::uint64_t> indices);

// indices strictly increasing and < n; values[j] belongs to indices[j].
// Writes into p, reusing its capacity.
void encode_into(std::uint64_t n, std::span<const std::uint64_t> indices,
                 std::span<const float> values, Payload& p);
inline Payload encode(std::uint64_t n, std::span<const std::uint64_t> indices,
                      std::span<const float> values) {
  Payload p;
  encode_into(n, indices, values, p);
  return p;
}

// acc[i] += weight * v for every kept (i, v), or, with kOverwrite, out = 0 and out[i] = v.
// Validates the tag, k, the byte length, every index and the ordering; throws ProtocolError.
void decode_add(const Payload& payload, std::span<float> acc, float weight, const char* codec);

}  // namespace psgd::sparse
