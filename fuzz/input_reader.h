#pragma once
// Reads a fuzz input as a stream of small fields (bytes, little-endian integers, length-prefixed
// pieces), so that one input can drive a sequence of operations. Past the end every read gives
// zeros or an empty piece; done() says when the input is used up.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace psgd::fuzz {

class InputReader {
 public:
  InputReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool done() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v |= std::uint32_t{byte()} << (8 * i);
    return v;
  }
  // The next `n` bytes (fewer at the end).
  std::span<const std::uint8_t> bytes(std::size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::span<const std::uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }
  // A piece prefixed by its length (two bytes).
  std::span<const std::uint8_t> piece() {
    const std::size_t n = byte() | (std::size_t{byte()} << 8);
    return bytes(n);
  }
  // Everything not read yet.
  std::span<const std::uint8_t> rest() { return bytes(size_); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace psgd::fuzz
