// Payloads come from the network: every codec refuses malformed ones with ProtocolError and never
// reads or writes out of bounds (run under PSGD_SANITIZE to have ASan check the last part).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "codecs/factory.h"
#include "codecs/codec_table.h"
#include "codecs/payload_io.h"
#include "core/error.h"

namespace psgd {
namespace {

const std::vector<std::string> kCodecs = codec_names();  // every codec of the table

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(n);
  for (auto& v : g)
    v = normal(rng);
  return g;
}

class Malformed : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Codec> codec_ = make_codec({.name = GetParam(), .ratio = 0.1});
};

TEST_P(Malformed, WrongElementCountIsRefused) {
  Payload p = codec_->encode(gaussian(100, 1));
  std::vector<float> acc(99);
  EXPECT_THROW(codec_->decode_add(p, acc, 1.0f), ProtocolError);
  p.num_elements = 1ull << 60;  // a huge claim
  std::vector<float> big(100);
  EXPECT_THROW(codec_->decode_add(p, big, 1.0f), ProtocolError);
}

TEST_P(Malformed, EveryTruncationAndExtensionIsRefused) {
  const Payload good = codec_->encode(gaussian(100, 2));
  std::vector<float> acc(100);
  for (std::size_t len = 0; len < good.bytes.size(); ++len) {
    Payload p = good;
    p.bytes.resize(len);
    EXPECT_THROW(codec_->decode_add(p, acc, 1.0f), ProtocolError) << len;
  }
  Payload longer = good;
  longer.bytes.push_back(0);
  EXPECT_THROW(codec_->decode_add(longer, acc, 1.0f), ProtocolError);
}

TEST_P(Malformed, RandomBytesNeverEscapeAsAnythingButProtocolError) {
  std::mt19937 rng(7);
  const Payload good = codec_->encode(gaussian(64, 3));
  std::vector<float> acc(64);
  for (int trial = 0; trial < 3000; ++trial) {
    Payload p = good;
    if (trial % 3 == 0) {
      p.bytes.resize(rng() % 64);
      for (auto& b : p.bytes)
        b = static_cast<std::uint8_t>(rng());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips && !p.bytes.empty(); ++f)
        p.bytes[rng() % p.bytes.size()] = static_cast<std::uint8_t>(rng());
    }
    try {
      codec_->decode_add(p, acc, 1.0f);
    } catch (const ProtocolError&) {
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, Malformed, ::testing::ValuesIn(kCodecs),
                         [](const auto& info) { return info.param; });

Payload sparse_payload(std::uint64_t n, std::uint8_t tag, std::uint64_t k,
                       const std::vector<std::uint8_t>& tail) {
  Payload p;
  p.num_elements = n;
  p.bytes.push_back(tag);
  append_value(p.bytes, k);
  for (std::uint64_t j = 0; j < k && j < 64; ++j)
    append_value(p.bytes, 1.0f);
  p.bytes.insert(p.bytes.end(), tail.begin(), tail.end());
  return p;
}

TEST(MalformedSparse, SpecificDefectsAreNamed) {
  auto topk = make_codec({.name = "topk", .error_feedback = "off"});
  std::vector<float> acc(16);
  auto refuses = [&](const Payload& p, const std::string& what) {
    try {
      topk->decode_add(p, acc, 1.0f);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  EXPECT_NO_THROW(topk->decode_add(sparse_payload(16, 0, 2, {3, 11}), acc, 1.0f));
  refuses(sparse_payload(16, 2, 2, {3, 11}), "tag");
  refuses(sparse_payload(16, 0, 2, {3, 12}), "out of range");  // 3, then 3 + 1 + 12 = 16
  refuses(sparse_payload(16, 0, 1, {16}), "out of range");
  refuses(sparse_payload(16, 0, 1, {0x80}), "truncated varint");
  refuses(
      sparse_payload(16, 0, 1, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}),
      "varint");
  refuses(sparse_payload(16, 0, 1ull << 62, {}), "claims");  // huge k, before any allocation
  refuses(sparse_payload(16, 1, 2, {0x03}), "bitmap of 16 elements needs 2 bytes");
  refuses(sparse_payload(16, 1, 3, {0x03, 0x00}), "bits set");
  std::vector<float> acc12(12);
  try {
    topk->decode_add(sparse_payload(12, 1, 2, {0x00, 0x30}), acc12, 1.0f);
    ADD_FAILURE() << "accepted set padding bits";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("padding"), std::string::npos) << e.what();
  }
}

TEST(MalformedQsgd, LevelsAboveSAndBadHeadersAreRefused) {
  auto qsgd = make_codec({.name = "qsgd", .levels = 2});
  std::vector<float> g{1, -1, 0.5f, 0.25f}, acc(4);
  Payload p = qsgd->encode(g);
  // s = 2: 2 level bits + sign, codes in bits [0, 12). Level 3 is out of range.
  Payload bad = p;
  bad.bytes.back() = 0xff;
  bad.bytes[bad.bytes.size() - 2] = 0xff;
  EXPECT_THROW(qsgd->decode_add(bad, acc, 1.0f), ProtocolError);
  Payload zero_levels = p;
  std::memset(zero_levels.bytes.data(), 0, 4);
  EXPECT_THROW(qsgd->decode_add(zero_levels, acc, 1.0f), ProtocolError);
  Payload other_bucket = p;
  std::memset(other_bucket.bytes.data() + 4, 0, 8);
  other_bucket.bytes[4] = 1;  // bucket 1: four norms expected
  EXPECT_THROW(qsgd->decode_add(other_bucket, acc, 1.0f), ProtocolError);
}

TEST(MalformedRandk, HugeKIsRefused) {
  auto randk = make_codec({.name = "randk", .error_feedback = "off"});
  std::vector<float> acc(10);
  Payload p;
  p.num_elements = 10;
  append_value<std::uint64_t>(p.bytes, 1);
  append_value<std::uint64_t>(p.bytes, 0);
  append_value<std::uint64_t>(p.bytes, 1ull << 61);
  EXPECT_THROW(randk->decode_add(p, acc, 1.0f), ProtocolError);
}

}  // namespace
}  // namespace psgd
