#include "codecs/sparse.h"

#include <bit>
#include <cstring>

#include "codecs/payload_io.h"

namespace psgd::sparse {
namespace {

std::uint64_t delta_bytes(std::span<const std::uint64_t> indices) {
  std::uint64_t total = 0, prev = 0;
  for (std::size_t j = 0; j < indices.size(); ++j) {
    total += varint_size(j == 0 ? indices[0] : indices[j] - prev - 1);
    prev = indices[j];
  }
  return total;
}

}  // namespace

IndexEncoding choose_encoding(std::uint64_t n, std::span<const std::uint64_t> indices) {
  return delta_bytes(indices) <= (n + 7) / 8 ? IndexEncoding::kDelta : IndexEncoding::kBitmap;
}

void encode_into(std::uint64_t n, std::span<const std::uint64_t> indices,
                 std::span<const float> values, Payload& p) {
  const std::uint64_t k = indices.size();
  const std::uint64_t delta = delta_bytes(indices), bitmap = (n + 7) / 8;
  const bool use_delta = delta <= bitmap;
  p.num_elements = n;
  p.bytes.clear();  // keeps the capacity of a reused payload
  p.bytes.reserve(1 + 8 + 4 * k + (use_delta ? delta : bitmap));
  p.bytes.push_back(
      static_cast<std::uint8_t>(use_delta ? IndexEncoding::kDelta : IndexEncoding::kBitmap));
  append_value<std::uint64_t>(p.bytes, k);
  append_bytes(p.bytes, values.data(), values.size_bytes());
  if (use_delta) {
    std::uint64_t prev = 0;
    for (std::size_t j = 0; j < k; ++j) {
      append_varint(p.bytes, j == 0 ? indices[0] : indices[j] - prev - 1);
      prev = indices[j];
    }
  } else {
    const std::size_t start = p.bytes.size();
    p.bytes.resize(start + bitmap, 0);
    for (std::uint64_t i : indices)
      p.bytes[start + i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
  }
}

void decode_add(const Payload& payload, std::span<float> acc, float weight, const char* codec) {
  const std::uint64_t n = acc.size();
  check_element_count(payload, n, codec);
  PayloadReader in(payload.view(), codec);
  const auto tag = in.read<std::uint8_t>();
  if (tag > 1) in.fail(fmt::format("unknown index encoding tag {}", tag));
  const auto k = in.read<std::uint64_t>();
  if (k > n) in.fail(fmt::format("claims {} kept coordinates of {}", k, n));
  const auto values = in.take(4 * k);  // k <= n, so 4k cannot overflow
  float* dst = acc.data();
  auto value = [&](std::uint64_t j) {
    float v;
    std::memcpy(&v, values.data() + 4 * j, 4);
    return v;
  };
  if (tag == static_cast<std::uint8_t>(IndexEncoding::kDelta)) {
    std::uint64_t next = 0;  // smallest index the next entry may name
    for (std::uint64_t j = 0; j < k; ++j) {
      const std::uint64_t gap = in.read_varint();
      if (gap >= n - next) in.fail(fmt::format("index {} + {} out of range {}", next, gap, n));
      const std::uint64_t i = next + gap;
      dst[i] += weight * value(j);
      next = i + 1;
    }
    in.expect_end();
  } else {
    const std::uint64_t nbytes = (n + 7) / 8;
    if (in.remaining() != nbytes) {
      in.fail(fmt::format("bitmap of {} elements needs {} bytes, {} present", n, nbytes,
                          in.remaining()));
    }
    const auto bitmap = in.take(nbytes);
    std::uint64_t count = 0;
    for (std::uint8_t byte : bitmap)
      count += static_cast<std::uint64_t>(std::popcount(byte));
    if (count != k) in.fail(fmt::format("bitmap has {} bits set but k is {}", count, k));
    if (n % 8 != 0 && (bitmap.back() >> (n % 8)) != 0) in.fail("bitmap padding bits are set");
    std::uint64_t j = 0;
    for (std::uint64_t b = 0; b < nbytes; ++b) {
      for (unsigned bits = bitmap[b]; bits != 0; bits &= bits - 1) {
        dst[8 * b + static_cast<unsigned>(std::countr_zero(bits))] += weight * value(j++);
      }
    }
  }
}

}  // namespace psgd::sparse
