#include "network/frame.h"

#include <gtest/gtest.h>

#include <random>
#include <type_traits>

#include "core/error.h"
#include "network/messages/link.h"

namespace psgd {
namespace {

constexpr std::uint64_t kLimit = 1 << 20;

Gradient sample_gradient() {
  Gradient g;
  g.iteration = 42;
  g.values.num_elements = 3;
  g.values.bytes = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  g.loss = 0.75;
  g.samples = 128;
  g.times.compute_s = 0.5;
  g.times.wait_s = 0.25;
  return g;
}

TEST(Frame, RoundTripEveryMessageType) {
  std::vector<Message> messages{
      ErrorMessage{"nope"},
      Hello{.protocol = kProtocolVersion,
            .host = "h",
            .pid = 7,
            .cores = 2,
            .threads = 1,
            .version = "abc",
            .slowdown = 4,
            .dead_after = 1.5},
      AuthChallenge{
          .nonce = {1, 2}, .required = true, .job_id = "j", .server_id = "s", .dead_after = 2.5},
      Job{.worker_id = 3,
          .spec_json = "{}",
          .samples = {5, 1, 9},
          .threads = 2,
          .num_parameters = 10},
      Ready{.worker_id = 3, .num_parameters = 10, .samples = 3, .threads = 2, .detail = "d"},
      Finish{.status = "completed", .ok = true},
      Params{.iteration = 9, .values = {.num_elements = 1, .bytes = {0, 0, 128, 63}}},
      sample_gradient(),
      ModelDelta{.iteration = 8,
                 .values = {.num_elements = 1, .bytes = {0, 0, 128, 63}},
                 .loss = 0.5,
                 .samples = 512,
                 .local_steps = 4,
                 .times = {.compute_s = 1}},
      CcdcCoded{.from = 2, .iteration = 5, .group = 3, .bits = {0x7fc00001u, 0xffffffffu}},
      CcdcSlice{.from = 1, .iteration = 5, .values = {1.5f, -2.0f}},
  };
  for (const Message& m : messages) {
    const auto frame = encode_frame(m);
    const Message back = decode_frame(frame, kLimit);
    EXPECT_EQ(type_of(back), type_of(m));
    // Re-encoding the decoded message gives the same bytes: nothing was lost.
    EXPECT_EQ(encode_frame(back), frame) << type_name(type_of(m));
  }
  const auto g = std::get<Gradient>(decode_frame(encode_frame(sample_gradient()), kLimit));
  EXPECT_EQ(g.iteration, 42);
  EXPECT_EQ(g.values.bytes.size(), 12u);
  EXPECT_DOUBLE_EQ(g.times.wait_s, 0.25);
}

// Every type of the message list, default-constructed: the frame decodes to the same type and
// encodes to the same bytes again. Link messages take the connection's path (LinkMessage).
TEST(Frame, EveryListedTypeRoundTrips) {
  int types = 0;
  for_each_type(AllMessageTypes{}, [&](auto type) {
    using T = typename decltype(type)::type;
    const char* name = MessageTraits<T>::name;
    const auto id = MessageTraits<T>::type;
    EXPECT_STREQ(type_name(id), name);
    EXPECT_TRUE(known_type(static_cast<std::uint16_t>(id)));
    if constexpr (MessageTraits<T>::channel == Channel::kLink) {
      static_assert(!std::is_constructible_v<Message, T>, "link messages are not Messages");
      EXPECT_TRUE(is_link(id));
      const LinkMessage m = T{};
      EXPECT_EQ(type_of(m), id);
      const auto frame = encode_frame(m);
      const auto body = std::span<const std::uint8_t>(frame).subspan(kFrameHeaderBytes);
      const LinkMessage back = decode_link_body(id, body);
      EXPECT_TRUE(std::holds_alternative<T>(back)) << name;
      EXPECT_EQ(encode_frame(back), frame) << name;
      // Whoever is handed a Message never gets one.
      EXPECT_THROW(decode_frame(frame, kLimit), ProtocolError) << name;
      EXPECT_THROW(decode_body(id, body), ProtocolError) << name;
    } else {
      static_assert(!std::is_constructible_v<LinkMessage, T>);
      EXPECT_FALSE(is_link(id));
      const Message m = T{};
      EXPECT_EQ(type_of(m), id);
      const auto frame = encode_frame(m);
      const Message back = decode_frame(frame, kLimit);
      EXPECT_TRUE(std::holds_alternative<T>(back)) << name;
      EXPECT_EQ(encode_frame(back), frame) << name;
      EXPECT_THROW(
          decode_link_body(id, std::span<const std::uint8_t>(frame).subspan(kFrameHeaderBytes)),
          ProtocolError)
          << name;
    }
    ++types;
  });
  EXPECT_EQ(types, static_cast<int>(kMessageInfos.size()));
  EXPECT_EQ(std::variant_size_v<Message> + std::variant_size_v<LinkMessage>, kMessageInfos.size());
  EXPECT_FALSE(known_type(0));
  EXPECT_STREQ(type_name(static_cast<MessageType>(999)), "unknown");
}

// The wire ids are the protocol: changing one means a new kProtocolVersion (and this line).
TEST(Frame, WireIdsAreStable) {
  std::string ids;
  for (const MessageInfo& info : kMessageInfos)
    ids += fmt::format("{}={} ", info.name, static_cast<int>(info.type));
  EXPECT_EQ(kProtocolVersion, 21);
  EXPECT_EQ(ids,
            "Error=1 Hello=2 Job=3 Ready=4 Finish=5 DataOffer=6 DataChunk=7 PeerTable=8 "
            "PeerHello=9 PeersUp=10 Leave=30 StateRequest=23 WorkerState=24 WorkerLog=31 "
            "LogRequest=32 LocalData=33 LocalPlan=34 AuthHello=11 "
            "AuthChallenge=12 AuthProof=13 AuthOk=15 "
            "Params=16 Gradient=17 ModelDelta=18 RingChunk=19 AllreduceReport=20 "
            "RingHalt=25 RingHalted=26 RingReform=27 PeerGradient=21 CcdcCoded=40 CcdcSlice=41 "
            "Heartbeat=14 ShmOffer=60 ShmReply=61 "
            "ShmFrame=62 ");
}

TEST(Frame, HeaderLayoutIsStable) {
  const auto h = encode_header({.version = 1, .type = MessageType::kGradient, .body_bytes = 258});
  const std::array<std::uint8_t, 16> expected{'P', 'S', 'G', 'D', 1, 0, 17, 0,
                                              2,   1,   0,   0,   0, 0, 0,  0};
  EXPECT_EQ(h, expected);
}

TEST(Frame, OversizedLengthIsRefusedFromTheHeaderAlone) {
  auto h = encode_header({.type = MessageType::kGradient, .body_bytes = 0xFFFFFFFFull});
  try {
    decode_header(h, kLimit);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the limit"), std::string::npos);
  }
}

TEST(Frame, WrongMagicAndVersionAreNamed) {
  auto h = encode_header({.type = MessageType::kHello, .body_bytes = 1});
  h[0] = 'X';
  EXPECT_THROW(decode_header(h, kLimit), ProtocolError);
  auto v = encode_header({.version = kProtocolVersion + 1, .type = MessageType::kHello});
  try {
    decode_header(v, kLimit);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("protocol version"), std::string::npos);
  }
  // An error message of another version is still readable.
  auto e = encode_header({.version = kProtocolVersion + 1, .type = MessageType::kError});
  EXPECT_NO_THROW(decode_header(e, kLimit));
}

TEST(Frame, TruncatedAndTrailingBodiesAreRefused) {
  auto frame = encode_frame(sample_gradient());
  auto shorter = frame;
  shorter.pop_back();
  EXPECT_THROW(decode_frame(shorter, kLimit), ProtocolError);
  // Fix up the header's length so only the body is short.
  const auto body = std::span<const std::uint8_t>(frame).subspan(kFrameHeaderBytes);
  EXPECT_THROW(decode_body(MessageType::kGradient, body.first(body.size() - 1)), ProtocolError);
  std::vector<std::uint8_t> longer(body.begin(), body.end());
  longer.push_back(0);
  EXPECT_THROW(decode_body(MessageType::kGradient, longer), ProtocolError);
}

// Found by fuzz/fuzz_handshake.cc: a boolean field is one byte, 0 or 1; any other value is a
// malformed frame (read into a bool it was undefined behaviour).
TEST(Frame, ABooleanOtherThanZeroOrOneIsRefused) {
  const auto body = encode_body(Message(AuthHello{.identity = "host:1", .has_key = true}));
  ASSERT_EQ(body.back(), 1);  // has_key is the last field
  auto bad = body;
  bad.back() = 2;
  EXPECT_THROW(decode_body(MessageType::kAuthHello, bad), ProtocolError);
  bad.back() = 0;
  EXPECT_FALSE(std::get<AuthHello>(decode_body(MessageType::kAuthHello, bad)).has_key);
}

TEST(Frame, ElementCountLargerThanTheFrameIsRefusedBeforeAllocating) {
  // A Job whose sample vector claims 2^60 entries in a 40-byte body.
  std::vector<std::uint8_t> body;
  auto put64 = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
      body.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  body.insert(body.end(), {0, 0, 0, 0});  // worker_id
  put64(2);                               // spec_json length
  body.insert(body.end(), {'{', '}'});
  put64(1ull << 60);  // samples count
  put64(0);
  try {
    decode_body(MessageType::kJob, body);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("elements"), std::string::npos);
  }
}

TEST(Frame, RandomBytesNeverCrash) {
  std::mt19937 rng(1234);
  int refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::uint8_t> bytes(rng() % 64);
    for (auto& b : bytes)
      b = static_cast<std::uint8_t>(rng());
    // Half the time give it a valid header so the body decoders see garbage too.
    if (i % 2 && bytes.size() >= kFrameHeaderBytes) {
      const auto types =
          std::array{MessageType::kHello,     MessageType::kJob,    MessageType::kReady,
                     MessageType::kFinish,    MessageType::kParams, MessageType::kGradient,
                     MessageType::kModelDelta};
      const auto h = encode_header(
          {.type = types[rng() % types.size()], .body_bytes = bytes.size() - kFrameHeaderBytes});
      std::copy(h.begin(), h.end(), bytes.begin());
    }
    try {
      decode_frame(bytes, kLimit);
    } catch (const ProtocolError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 10000);
}

}  // namespace
}  // namespace psgd

namespace psgd {
namespace {

TEST(EncodedFrame, GatherSegmentsEqualTheContiguousFrame) {
  Gradient g;
  g.iteration = 3;
  g.values.num_elements = 100000;
  g.values.bytes.resize(400000);
  for (std::size_t i = 0; i < g.values.bytes.size(); ++i)
    g.values.bytes[i] = i * 7 % 251;
  g.loss = 1.5;
  auto message = std::make_shared<const Message>(g);
  EncodedFrame frame(message);
  EXPECT_GE(frame.segments().size(), 3u);  // head, the gradient (not copied), tail
  bool references_payload = false;
  for (const auto& s : frame.segments()) {
    references_payload |= s.data() == std::get<Gradient>(*message).values.bytes.data();
  }
  EXPECT_TRUE(references_payload);
  EXPECT_EQ(frame.flatten(), encode_frame(*message));
  EXPECT_EQ(frame.size(), encode_frame(*message).size());
  // Small messages stay in one piece.
  EncodedFrame small(std::make_shared<const Message>(Finish{.status = "x"}));
  EXPECT_EQ(small.segments().size(), 1u);
  EXPECT_EQ(small.flatten(), encode_frame(Finish{.status = "x"}));
}

// A RingChunk's values are neither serialised into a buffer of their own nor copied out of a
// frame, and the wire layout is that of a std::vector<float> whichever form the chunk has.
TEST(EncodedFrame, RingChunkIsSentFromItsViewAndReceivedAsAViewOfTheFrame) {
  std::vector<float> values(100000);
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>(i) * 0.5f;
  const RingChunk owned{.round = 4, .step = 1, .chunk = 2, .values = values};
  const RingChunk viewed{
      .round = 4,
      .step = 1,
      .chunk = 2,
      .viewed = true,
      .view = {reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * 4}};
  EncodedFrame frame(std::make_shared<const Message>(viewed));
  bool references_values = false;
  for (const auto& s : frame.segments())
    references_values |= s.data() == viewed.view.data();
  EXPECT_TRUE(references_values) << "the values were copied into the frame";
  const auto bytes = frame.flatten();
  EXPECT_EQ(bytes, encode_frame(owned));

  auto held = std::make_shared<const std::vector<std::uint8_t>>(bytes);
  const auto body = std::span<const std::uint8_t>(*held).subspan(kFrameHeaderBytes);
  const auto back = std::get<RingChunk>(decode_body(MessageType::kRingChunk, body, held));
  EXPECT_TRUE(back.viewed);
  EXPECT_TRUE(back.values.empty());
  EXPECT_GE(back.view.data(), held->data());
  EXPECT_LE(back.view.data() + back.view.size(), held->data() + held->size());
  EXPECT_EQ(back.owner, held);
  EXPECT_EQ(back.round, 4);
  EXPECT_EQ(back.size(), values.size());
  EXPECT_TRUE(std::equal(back.view.begin(), back.view.end(), viewed.view.begin()));
  // Without an owner the values are copied (a frame the caller does not keep).
  const auto copied = std::get<RingChunk>(decode_frame(bytes, 1 << 22));
  EXPECT_FALSE(copied.viewed);
  EXPECT_EQ(copied.values, values);
}

}  // namespace
}  // namespace psgd
