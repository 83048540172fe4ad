// --ship_data's chunking: what a worker assembles is byte-identical to what it would read itself.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "experiments/data_shipping.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

TEST(Shipping, AssembledBlocksAreByteIdenticalToLocallyReadOnes) {
  testing::TempDir dir;
  {
    std::ofstream out(dir.file("d.csv"));
    for (int i = 0; i < 5000; ++i)
      out << i * 0.25 << "," << (i * 7) % 13 << "," << i % 4 << "\n";
  }
  const nn::DataSplit local = nn::load_dataset("csv:" + dir.file("d.csv"));
  const std::vector<std::int64_t> samples{3, 17, 18, 400, 3999};
  const auto pack = nn::pack_dataset(nn::subset(local.train, samples, ""));
  const auto chunks = make_chunks(pack, 16);  // many small chunks
  ASSERT_GT(chunks.size(), 2u);
  ChunkAssembler a;
  for (const auto& c : chunks)
    a.add(c);
  ASSERT_TRUE(a.complete());
  EXPECT_EQ(a.bytes(), pack);
  const nn::Dataset shipped = nn::unpack_dataset(a.bytes(), "shipped");
  const nn::Dataset direct = nn::subset(local.train, samples, "");
  EXPECT_EQ(shipped.images, direct.images);
  EXPECT_EQ(shipped.labels, direct.labels);
  EXPECT_EQ(nn::content_hash(shipped), nn::content_hash(direct));

  // Big chunks compress: a 1 MiB default chunk of this data is much smaller on the wire.
  const auto whole = nn::pack_dataset(local.train);
  std::size_t wire = 0;
  for (const auto& c : make_chunks(whole))
    wire += c.compressed.size();
  EXPECT_LT(wire, whole.size());
}

TEST(Shipping, CorruptOrOutOfOrderChunksAreRefused) {
  std::vector<std::uint8_t> pack(1000);
  for (std::size_t i = 0; i < pack.size(); ++i)
    pack[i] = static_cast<std::uint8_t>(i * 31);
  const auto chunks = make_chunks(pack, 300);
  ASSERT_EQ(chunks.size(), 4u);
  {
    ChunkAssembler a;
    EXPECT_THROW(a.add(chunks[1]), ProtocolError);
  }
  {
    ChunkAssembler a;
    auto bad = chunks[0];
    bad.compressed[bad.compressed.size() / 2] ^= 0x55;
    EXPECT_THROW(a.add(bad), ProtocolError);
  }
  {
    ChunkAssembler a;
    auto bad = chunks[0];
    bad.sha256[0] = bad.sha256[0] == '0' ? '1' : '0';
    EXPECT_THROW(a.add(bad), ProtocolError);
  }
  {
    ChunkAssembler a;
    auto bad = chunks[0];
    bad.total_bytes = 1ull << 62;
    EXPECT_THROW(a.add(bad), ProtocolError);
  }
}

// Found by fuzz/fuzz_shipping.cc: a first chunk that claims the largest shipment allowed
// (64 GiB in 65,536 chunks) had the assembler reserve all of it at once; it now takes room as
// chunks arrive, so such a claim costs nothing until the data come.
TEST(Shipping, AClaimOfAHugeShipmentReservesNothingUpFront) {
  std::vector<std::uint8_t> pack(1000, 7);
  auto first = make_chunks(pack, 300)[0];
  first.total_bytes = kMaxShippedBytes;
  first.count = static_cast<std::uint32_t>(kMaxShippedBytes / kShipChunkBytes);
  ChunkAssembler a;
  EXPECT_NO_THROW(a.add(first));
  EXPECT_FALSE(a.complete());
  EXPECT_LE(a.bytes().capacity(), 16 * kShipChunkBytes);
}

// Found by fuzz/fuzz_shipping.cc: an empty pack (no samples) unpacks to an empty dataset.
TEST(Shipping, AnEmptyPackUnpacksToNoSamples) {
  nn::Dataset none;
  none.channels = 1, none.height = 2, none.width = 2, none.num_classes = 3;
  const nn::Dataset back = nn::unpack_dataset(nn::pack_dataset(none), "empty");
  EXPECT_EQ(back.size(), 0u);
  EXPECT_EQ(back.sample_numel(), 4);
}

}  // namespace
}  // namespace psgd
