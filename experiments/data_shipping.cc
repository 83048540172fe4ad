#include "experiments/data_shipping.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>

#include "core/error.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"

namespace psgd {

std::vector<DataChunk> make_chunks(std::span<const std::uint8_t> pack, std::size_t chunk_bytes) {
  PSGD_CHECK(chunk_bytes > 0, "chunk size must be positive");
  const std::string total_sha = nn::sha256_hex(pack);
  const auto count = static_cast<std::uint32_t>(
      std::max<std::size_t>(1, (pack.size() + chunk_bytes - 1) / chunk_bytes));
  std::vector<DataChunk> chunks;
  chunks.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t first = std::size_t{i} * chunk_bytes;
    const auto part = pack.subspan(first, std::min(chunk_bytes, pack.size() - first));
    DataChunk c{.index = i,
                .count = count,
                .total_bytes = pack.size(),
                .total_sha256 = total_sha,
                .raw_bytes = part.size(),
                .sha256 = nn::sha256_hex(part)};
    uLongf size = compressBound(static_cast<uLong>(part.size()));
    c.compressed.resize(size);
    if (compress2(c.compressed.data(), &size, part.data(), static_cast<uLong>(part.size()),
                  Z_BEST_SPEED) != Z_OK) {
      throw Error("zlib compress2 failed");
    }
    c.compressed.resize(size);
    chunks.push_back(std::move(c));
  }
  return chunks;
}

void ChunkAssembler::add(const DataChunk& c) {
  if (complete()) throw ProtocolError("a data chunk arrived after the data was complete");
  if (next_ == 0) {
    if (c.count == 0 || c.total_bytes > kMaxShippedBytes ||
        c.total_bytes > std::uint64_t{c.count} * kShipChunkBytes) {
      throw ProtocolError(
          fmt::format("implausible data shipment: {} chunks, {} bytes", c.count, c.total_bytes));
    }
    count_ = c.count;
    total_ = c.total_bytes;
    total_sha256_ = c.total_sha256;
    // Room for what the first chunks will bring, not for what the first one claims (a hostile
    // claim of 64 GiB would be an allocation bomb: found by fuzz/fuzz_shipping.cc).
    bytes_.reserve(std::min<std::uint64_t>(total_, 16 * kShipChunkBytes));
  }
  if (c.index != next_ || c.count != count_ || c.total_bytes != total_ ||
      c.total_sha256 != total_sha256_) {
    throw ProtocolError(fmt::format("data chunk {} of {} out of sequence (expected {} of {})",
                                    c.index, c.count, next_, count_));
  }
  if (c.raw_bytes > kShipChunkBytes || bytes_.size() + c.raw_bytes > total_) {
    throw ProtocolError(fmt::format("data chunk {} claims {} bytes, more than the shipment holds",
                                    c.index, c.raw_bytes));
  }
  const std::size_t at = bytes_.size();
  bytes_.resize(at + c.raw_bytes);
  uLongf size = static_cast<uLongf>(c.raw_bytes);
  const int rc = uncompress(bytes_.data() + at, &size, c.compressed.data(),
                            static_cast<uLong>(c.compressed.size()));
  if (rc != Z_OK || size != c.raw_bytes) {
    throw ProtocolError(fmt::format("data chunk {} does not inflate to its {} bytes (zlib {})",
                                    c.index, c.raw_bytes, rc));
  }
  const auto part = std::span<const std::uint8_t>(bytes_).subspan(at);
  if (nn::sha256_hex(part) != c.sha256) {
    throw ProtocolError(fmt::format("data chunk {} fails its SHA-256 check", c.index));
  }
  compressed_ += c.compressed.size();
  ++next_;
  if (complete()) {
    if (bytes_.size() != total_ || nn::sha256_hex(bytes_) != total_sha256_) {
      throw ProtocolError("the shipped data fails its whole-pack SHA-256 check");
    }
  }
}

DataShipper::Shipment DataShipper::answer(const DataOffer& offer,
                                          std::span<const std::int64_t> samples) {
  Shipment s;
  bool same = !offer.hash.empty() && offer.hash == hash_;
  if (hash_.empty()) {  // auto: the worker's rows for its samples
    same = !offer.rows_sha256.empty() && offer.rows_sha256 == nn::rows_hash(*train_, samples);
    s.why = !offer.why.empty()          ? offer.why
            : offer.rows_sha256.empty() ? std::string("it holds no copy")
                                        : fmt::format(
                                              "its rows differ from the server's "
                                              "(sha256 {}... over its {} rows)",
                                              offer.rows_sha256.substr(0, 12), samples.size());
  } else if (!same) {
    s.why = offer.why.empty() ? std::string("its copy differs from the server's") : offer.why;
  }
  if (same) {
    s.why.clear();
    s.skipped = true;
    s.frames.push_back(
        std::make_shared<const EncodedFrame>(std::make_shared<const Message>(DataChunk{})));
    return s;
  }
  const auto pack = nn::pack_dataset(nn::subset(*train_, samples, ""));
  s.packed_bytes = pack.size();
  for (auto& chunk : make_chunks(pack)) {
    auto frame =
        std::make_shared<const EncodedFrame>(std::make_shared<const Message>(std::move(chunk)));
    s.wire_bytes += frame->size();
    s.frames.push_back(std::move(frame));
  }
  wire_bytes_ += s.wire_bytes;
  return s;
}

}  // namespace psgd
