#pragma once
// Bounds-checked reading and appending of codec payload bytes (little-endian).
//
// Payloads come from the network, so every read goes through PayloadReader, which throws
// ProtocolError naming the codec instead of reading past the end. Codec headers use these helpers;
// bulk data (packed bits, values) is read through take(), which hands out a span of exactly the
// bytes asked for once they are known to be there.
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "codecs/codec.h"
#include "core/error.h"

namespace psgd {

static_assert(std::endian::native == std::endian::little,
              "codec wire formats are little-endian; big-endian hosts need byte swapping");

// Refuses a payload whose element count differs from the vector it is decoded into.
void check_element_count(const Payload& payload, std::size_t expected, const char* codec);

// LEB128 length of v (1..10 bytes).
constexpr std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

class PayloadReader {
 public:
  PayloadReader(std::span<const std::uint8_t> bytes, const char* codec)
      : bytes_(bytes), codec_(codec) {}

  template <typename T>
  requires std::is_trivially_copyable_v<T> T read() {
    T v;
    std::memcpy(&v, take(sizeof(T)).data(), sizeof(T));
    return v;
  }

  // The next n bytes; throws if fewer remain.
  std::span<const std::uint8_t> take(std::size_t n);

  // LEB128 unsigned; throws on truncation or a value that does not fit 64 bits.
  std::uint64_t read_varint();

  std::size_t remaining() const { return bytes_.size() - pos_; }

  // Throws unless every byte was consumed.
  void expect_end() const;

  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
  const char* codec_;
};

inline void append_bytes(std::vector<std::uint8_t>& out, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), p, p + n);
}

template <typename T>
requires std::is_trivially_copyable_v<T>
void append_value(std::vector<std::uint8_t>& out, T v) {
  append_bytes(out, &v, sizeof(T));
}

inline void append_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

// ‖a − b‖ / ‖a‖ (0 when a is zero and b equals it), accumulated in double.
double relative_error(std::span<const float> a, std::span<const float> b);

}  // namespace psgd
