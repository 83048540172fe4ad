#include "codecs/plain.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "codecs/factory.h"
#include "core/error.h"

namespace psgd {
namespace {

TEST(PlainCodec, RoundTripIsBitExact) {
  std::vector<float> g{0.0f, -1.5f, 3.25e-20f, std::numeric_limits<float>::max(), -0.0f, 1e30f};
  PlainCodec codec;
  Payload p = codec.encode(g);
  EXPECT_EQ(p.num_elements, g.size());
  EXPECT_EQ(p.bytes.size(), g.size() * 4);
  std::vector<float> out(g.size(), 123.0f);
  codec.decode(p, out);
  for (std::size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(g[i]));
  }
}

TEST(PlainCodec, DecodeAddAccumulatesWithWeight) {
  PlainCodec codec;
  std::vector<float> a{1, 2, 3}, acc{10, 10, 10};
  codec.decode_add(codec.encode(a), acc, 0.5f);
  EXPECT_EQ(acc, (std::vector<float>{10.5f, 11.0f, 11.5f}));
}

TEST(PlainCodec, EmptyVector) {
  PlainCodec codec;
  std::vector<float> none;
  Payload p = codec.encode(none);
  EXPECT_NO_THROW(codec.decode(p, none));
}

TEST(PlainCodec, MalformedPayloadsAreRefused) {
  PlainCodec codec;
  std::vector<float> a{1, 2, 3}, acc(3);
  Payload p = codec.encode(a);
  std::vector<float> wrong(4);
  EXPECT_THROW(codec.decode_add(p, wrong, 1.0f), ProtocolError);  // wrong element count
  p.bytes.pop_back();
  EXPECT_THROW(codec.decode_add(p, acc, 1.0f), ProtocolError);  // truncated bytes
  Payload lying = codec.encode(a);
  lying.num_elements = 1000;
  std::vector<float> big(1000);
  EXPECT_THROW(codec.decode(lying, big), ProtocolError);  // header says more than the bytes hold
}

// The server sums plain gradients where they were received: the view is the payload's own bytes,
// with the decoded values; a payload at an address floats cannot be read from is not viewed.
TEST(PlainCodec, ViewDecodedIsThePayloadItselfWhenAligned) {
  PlainCodec codec;
  const std::vector<float> g{1.5f, -2.0f, 3.0f};
  auto frame = std::make_shared<std::vector<std::uint8_t>>(1 + g.size() * sizeof(float) + 3);
  std::memcpy(frame->data() + 4, g.data(), g.size() * sizeof(float));
  Payload aligned{.num_elements = g.size(),
                  .received = std::span<const std::uint8_t>(*frame).subspan(4, 12),
                  .frame = frame};
  const auto view = codec.view_decoded(aligned, g.size());
  ASSERT_EQ(view.size(), g.size());
  EXPECT_EQ(static_cast<const void*>(view.data()), frame->data() + 4) << "a copy, not a view";
  EXPECT_EQ(std::vector<float>(view.begin(), view.end()), g);

  Payload odd{.num_elements = g.size(),
              .received = std::span<const std::uint8_t>(*frame).subspan(1, 12),
              .frame = frame};
  EXPECT_TRUE(codec.view_decoded(odd, g.size()).empty());
  EXPECT_THROW(codec.view_decoded(aligned, 4), ProtocolError) << "wrong element count";
}

TEST(Codec, OnlyPlainViewsItsPayloadDecoded) {
  const std::vector<float> g(64, 0.5f);
  for (const char* name : {"fp16", "bf16", "qsgd", "sign", "topk", "randk"}) {
    auto codec = make_codec(CodecSpec{.name = name, .error_feedback = "off"});
    const Payload p = codec->encode(g);
    EXPECT_TRUE(codec->view_decoded(p, g.size()).empty()) << name;
  }
}

}  // namespace
}  // namespace psgd
