#pragma once
// Cereal archives over a byte buffer for the wire protocol.
//
// Cereal's stock BinaryInputArchive resizes a vector to whatever count the peer wrote before it
// reads a single element, so a 20-byte frame claiming 2^60 elements is an allocation bomb. These
// archives use the same binary layout (little-endian, 64-bit size tags) but the input side checks
// every count against the bytes actually left in the frame before anything is allocated, and
// throws ProtocolError on any short read. The output side appends straight to a std::vector;
// SizeArchive goes through the same save functions and only counts the bytes (a frame's size
// without the frame).
#include <cereal/cereal.hpp>

#include <concepts>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace psgd::wire {

// A contiguous block the output archive did not copy: it belongs in the stream at `offset` of
// the inline bytes, and points into the message being serialised (which must outlive its use).
struct Blob {
  std::size_t offset = 0;
  std::span<const std::uint8_t> bytes;
};

class OutputArchive : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
 public:
  // Blocks of at least this many bytes are referenced, not copied, when `blobs` is given.
  static constexpr std::size_t kBlobThreshold = 64 * 1024;

  explicit OutputArchive(std::vector<std::uint8_t>& out, std::vector<Blob>* blobs = nullptr)
      : cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>(this),
        out_(out),
        blobs_(blobs) {}

  void saveBinary(const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    out_.insert(out_.end(), p, p + size);
  }

  // A large array (a gradient, parameters) is not copied into the frame: the frame is written
  // with a gather write from the inline bytes and the message's own buffers.
  void saveBlock(const void* data, std::size_t size) {
    if (blobs_ == nullptr || size < kBlobThreshold) {
      saveBinary(data, size);
      return;
    }
    blobs_->push_back({out_.size(), {static_cast<const std::uint8_t*>(data), size}});
  }

 private:
  std::vector<std::uint8_t>& out_;
  std::vector<Blob>* blobs_;
};

// Counts the bytes OutputArchive would write, writing nothing: large arrays are neither copied nor
// read.
class SizeArchive : public cereal::OutputArchive<SizeArchive, cereal::AllowEmptyClassElision> {
 public:
  SizeArchive() : cereal::OutputArchive<SizeArchive, cereal::AllowEmptyClassElision>(this) {}

  void saveBinary(const void*, std::size_t size) { bytes_ += size; }
  void saveBlock(const void*, std::size_t size) { bytes_ += size; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_ = 0;
};

// The archives a message is saved to; save functions are written once for both.
template <class A>
concept Output = std::same_as<A, OutputArchive> || std::same_as<A, SizeArchive>;

class InputArchive : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
 public:
  // With `owner` (what keeps `data` alive), large blocks may be viewed instead of copied (see
  // take()); without, every field is copied out of `data`.
  explicit InputArchive(std::span<const std::uint8_t> data,
                        std::shared_ptr<const void> owner = nullptr)
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this),
        data_(data),
        owner_(std::move(owner)) {}

  const std::shared_ptr<const void>& owner() const { return owner_; }

  void loadBinary(void* out, std::size_t size) {
    const auto bytes = take(size);
    if (size) std::memcpy(out, bytes.data(), size);
  }

  // The next `size` bytes of the frame, without copying them (valid while the frame is).
  std::span<const std::uint8_t> take(std::size_t size) {
    if (size > remaining()) {
      throw ProtocolError(
          fmt::format("message body ends early: {} more bytes needed, {} left", size, remaining()));
    }
    const auto out = data_.subspan(pos_, size);
    pos_ += size;
    return out;
  }

  std::size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const std::uint8_t> data_;
  std::shared_ptr<const void> owner_;
  std::size_t pos_ = 0;
};

// --- arithmetic values
template <Output A, class T>
requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const T& t) {
  ar.saveBinary(&t, sizeof(T));
}
template <class T>
requires(std::is_arithmetic_v<T> &&
         !std::is_same_v<T, bool>) void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& t) {
  ar.loadBinary(&t, sizeof(T));
}
// A bool is one byte, 0 or 1; any other byte is a malformed frame (copied into a bool it would be
// undefined behaviour: found by fuzz/fuzz_handshake.cc).
inline void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, bool& t) {
  std::uint8_t byte = 0;
  ar.loadBinary(&byte, 1);
  if (byte > 1) throw ProtocolError(fmt::format("a boolean field holds {}, not 0 or 1", byte));
  t = byte == 1;
}

// --- name-value pairs carry no names in a binary archive
template <Output A, class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(A& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(InputArchive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

// --- size tags: the input side refuses a count larger than the bytes left (every element takes
// at least one byte), which bounds every allocation by the frame's length.
template <Output A, class T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const cereal::SizeTag<T>& t) {
  const std::uint64_t size = t.size;
  ar.saveBinary(&size, sizeof(size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::SizeTag<T>& t) {
  std::uint64_t size = 0;
  ar.loadBinary(&size, sizeof(size));
  if (size > ar.remaining()) {
    throw ProtocolError(
        fmt::format("message claims {} elements but only {} bytes remain", size, ar.remaining()));
  }
  t.size = static_cast<std::remove_reference_t<T>>(size);
}

// --- contiguous binary blocks (vectors of arithmetic types)
template <Output A, class T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const cereal::BinaryData<T>& bd) {
  ar.saveBlock(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace psgd::wire

CEREAL_REGISTER_ARCHIVE(psgd::wire::OutputArchive)
CEREAL_REGISTER_ARCHIVE(psgd::wire::SizeArchive)
CEREAL_REGISTER_ARCHIVE(psgd::wire::InputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(psgd::wire::InputArchive, psgd::wire::OutputArchive)
