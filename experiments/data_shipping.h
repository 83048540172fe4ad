#pragma once
// --ship_data: a worker's data pack (nn/data_pack.h) cut into chunks for the wire, and put back
// together on the other side; DataShipper is the server's side of the exchange.
//
// Each chunk carries at most kShipChunkBytes of the pack, zlib-compressed, with the SHA-256 of its
// uncompressed bytes; the first chunk's header fields (count, total size, SHA-256 of the whole
// pack) are repeated in every chunk and must not change. The assembler checks every field before
// it allocates or copies anything, so a corrupt or hostile chunk is a ProtocolError, never an
// overflow.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "network/frame.h"
#include "network/messages.h"
#include "nn/dataset.h"

namespace psgd {

inline constexpr std::size_t kShipChunkBytes = 1 << 20;
// Refuse packs announced larger than this (a worker's share of any dataset psgd handles).
inline constexpr std::uint64_t kMaxShippedBytes = 64ull << 30;

std::vector<DataChunk> make_chunks(std::span<const std::uint8_t> pack,
                                   std::size_t chunk_bytes = kShipChunkBytes);

class ChunkAssembler {
 public:
  // Adds the next chunk (they arrive in order). Throws ProtocolError on any inconsistency: wrong
  // index, changed totals, a chunk that does not inflate to its size, or a checksum mismatch.
  void add(const DataChunk& chunk);
  bool complete() const { return count_ > 0 && next_ == count_; }
  std::uint64_t compressed_bytes() const { return compressed_; }
  // The whole pack, once complete() (its SHA-256 verified).
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  std::uint32_t count_ = 0;
  std::uint32_t next_ = 0;
  std::uint64_t total_ = 0;
  std::uint64_t compressed_ = 0;
  std::string total_sha256_;
  std::vector<std::uint8_t> bytes_;
};

// The server's side: answers each worker's DataOffer with its samples' chunks, or with one empty
// DataChunk when the worker's own copy will do: --ship_data always, when its whole training set
// has the server's content hash `hash`; auto (`hash` empty), when the rows it holds for its
// samples have the server's fingerprint (nn::rows_hash). Socket-free.
class DataShipper {
 public:
  DataShipper(std::shared_ptr<const nn::Dataset> train, std::string hash)
      : train_(std::move(train)), hash_(std::move(hash)) {}

  struct Shipment {
    std::vector<std::shared_ptr<const EncodedFrame>> frames;  // to send, in order
    bool skipped = false;                                     // the worker's own copy will do
    std::string why;                 // why its copy would not do (shipped only)
    std::uint64_t packed_bytes = 0;  // the pack, uncompressed
    std::uint64_t wire_bytes = 0;    // the frames
  };
  Shipment answer(const DataOffer& offer, std::span<const std::int64_t> samples);
  const std::string& hash() const { return hash_; }
  std::uint64_t wire_bytes() const { return wire_bytes_; }  // all shipments so far

 private:
  std::shared_ptr<const nn::Dataset> train_;
  std::string hash_;
  std::uint64_t wire_bytes_ = 0;
};

}  // namespace psgd
