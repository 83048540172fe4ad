#pragma once
// The binary state a component carries from one step to the next and a checkpoint must keep (an
// optimiser's momentum buffer, a codec's error-feedback residual or random stream, a model
// average): written with StateWriter, read back with StateReader.
//
// Format: little-endian fixed-size values; a vector is its u64 element count, then the elements;
// a nested blob (a decorator's inner codec) is a byte vector. The reader checks every count
// against the bytes left before it allocates anything and throws ProtocolError on a short or
// malformed read, so state that arrives over the network or from a file cannot make it allocate
// more than the input holds (the same rule as network/archive.h, which core/ cannot use).
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace psgd {

class StateWriter {
 public:
  explicit StateWriter(std::vector<std::uint8_t>& out) : out_(out) {}

  template <class T>
  requires std::is_arithmetic_v<T>
  void put(T value) { append(&value, sizeof(T)); }
  void put_bool(bool value) { put<std::uint8_t>(value ? 1 : 0); }
  template <class T>
  requires std::is_arithmetic_v<T>
  void put_vector(std::span<const T> values) {
    put<std::uint64_t>(values.size());
    append(values.data(), values.size_bytes());
  }
  void put_floats(std::span<const float> values) { put_vector<float>(values); }
  void put_bytes(std::span<const std::uint8_t> bytes) { put_vector<std::uint8_t>(bytes); }

 private:
  // resize + memcpy rather than vector::insert, which GCC 12 at -O2 warns about
  // (-Wstringop-overflow, a false positive) when the vector starts empty.
  void append(const void* data, std::size_t n) {
    if (n == 0) return;
    const std::size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, data, n);
  }

  std::vector<std::uint8_t>& out_;
};

class StateReader {
 public:
  // `what` names the state in error messages ("qsgd codec state").
  StateReader(std::span<const std::uint8_t> bytes, const char* what) : bytes_(bytes), what_(what) {}

  template <class T>
  requires std::is_arithmetic_v<T> T get() {
    T value{};
    std::memcpy(&value, take(sizeof(T)).data(), sizeof(T));
    return value;
  }
  bool get_bool() {
    const auto b = get<std::uint8_t>();
    if (b > 1) fail("a flag that is neither 0 nor 1");
    return b == 1;
  }
  template <class T>
  requires std::is_arithmetic_v<T> std::vector<T> get_vector() {
    const auto count = get<std::uint64_t>();
    if (count > remaining() / sizeof(T)) fail("a count larger than the bytes left");
    std::vector<T> values(static_cast<std::size_t>(count));
    if (count)
      std::memcpy(values.data(), take(values.size() * sizeof(T)).data(), values.size() * sizeof(T));
    return values;
  }
  std::vector<float> get_floats() { return get_vector<float>(); }
  std::vector<std::uint8_t> get_bytes() { return get_vector<std::uint8_t>(); }
  // A float vector that must have exactly `size` elements (a buffer of a known model).
  std::vector<float> get_floats(std::size_t size) {
    auto v = get_floats();
    if (v.size() != size) {
      fail(fmt::format("{} values where {} belong", v.size(), size).c_str());
    }
    return v;
  }

  std::size_t remaining() const { return bytes_.size() - pos_; }
  // Throws unless every byte has been read.
  void expect_end() const {
    if (remaining() != 0) fail(fmt::format("{} bytes left over", remaining()).c_str());
  }
  [[noreturn]] void fail(const char* why) const {
    throw ProtocolError(fmt::format("{} does not fit: {}", what_, why));
  }

 private:
  std::span<const std::uint8_t> take(std::size_t n) {
    if (n > remaining()) fail("it ends early");
    const auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  std::span<const std::uint8_t> bytes_;
  const char* what_;
  std::size_t pos_ = 0;
};

}  // namespace psgd
