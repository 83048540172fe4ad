#include "codecs/payload_io.h"

#include <cmath>

namespace psgd {

void check_element_count(const Payload& payload, std::size_t expected, const char* codec) {
  if (payload.num_elements != expected) {
    throw ProtocolError(fmt::format("{} payload holds {} elements but {} were expected", codec,
                                    payload.num_elements, expected));
  }
}

std::span<const std::uint8_t> PayloadReader::take(std::size_t n) {
  if (n > remaining()) {
    fail(fmt::format("ends early: {} more bytes needed at offset {}, {} left", n, pos_,
                     remaining()));
  }
  auto s = bytes_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::uint64_t PayloadReader::read_varint() {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= bytes_.size()) fail("truncated varint");
    const std::uint8_t b = bytes_[pos_++];
    const std::uint64_t bits = b & 0x7f;
    if (shift == 63 && bits > 1) fail("varint does not fit 64 bits");
    v |= bits << shift;
    if (!(b & 0x80)) return v;
  }
  fail("varint longer than 10 bytes");
}

void PayloadReader::expect_end() const {
  if (remaining() != 0) fail(fmt::format("{} trailing bytes", remaining()));
}

void PayloadReader::fail(const std::string& what) const {
  throw ProtocolError(fmt::format("{} payload: {}", codec_, what));
}

double relative_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(a[i]) * a[i];
  }
  if (den == 0) return num == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

}  // namespace psgd
