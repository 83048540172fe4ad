// Peer links between the workers of a job: authenticated by the job's peer key, and robust to
// strangers on a listener (they are dropped; the job goes on).
#include "network/tcp/peer_mesh.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "network/auth.h"
#include "network/frame.h"

namespace psgd::net {
namespace {

using asio::ip::tcp;

struct TwoRanks {
  asio::io_context io;
  std::vector<std::uint8_t> key = make_nonce();
  PeerMesh zero{io, 0, 2, ConnectionOptions{.max_body_bytes = 1 << 20, .read_timeout_s = 5}};
  PeerMesh one{io, 1, 2, ConnectionOptions{.max_body_bytes = 1 << 20, .read_timeout_s = 5}};
  std::vector<PeerAddress> addresses{{"127.0.0.1", 0}, {"127.0.0.1", 0}};
  std::vector<std::string> errors;
  std::vector<std::int64_t> at_zero;
  bool zero_ready = false, one_ready = false;

  TwoRanks() {
    addresses[0].port = zero.listen("127.0.0.1");
    addresses[1].port = one.listen("127.0.0.1");
    zero.set_key(key);
    zero.connect(
        addresses, [this] { zero_ready = true; },
        [this](int, Message&& m) { at_zero.push_back(std::get<Params>(m).iteration); },
        [this](int peer, const std::string& why) {
          errors.push_back(fmt::format("{}: {}", peer, why));
        });
  }

  void run_until(const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < give_up)
      io.run_one_for(std::chrono::milliseconds(20));
  }

  // Connects a raw socket to rank 0's listener and writes `bytes`; returns the socket.
  tcp::socket stranger(const std::vector<std::uint8_t>& bytes) {
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                            static_cast<unsigned short>(addresses[0].port)));
    asio::write(s, asio::buffer(bytes));
    return s;
  }

  // Rank 1 with `one_key` links up with rank 0; returns whether both ended up ready.
  bool link_one(std::vector<std::uint8_t> one_key) {
    one.set_key(std::move(one_key));
    one.connect(
        addresses, [this] { one_ready = true; }, [](int, Message&&) {},
        [this](int, const std::string& why) { errors.push_back(why); });
    run_until([&] { return zero_ready && one_ready; });
    return zero_ready && one_ready;
  }

  // Whether rank 0 closed the stranger's link (end of stream within the timeout).
  bool dropped(tcp::socket& s) {
    auto closed = std::make_shared<bool>(false);
    auto buf = std::make_shared<std::array<std::uint8_t, 64>>();
    s.async_read_some(asio::buffer(*buf), [closed, buf](std::error_code ec, std::size_t) {
      *closed = ec == asio::error::eof;
    });
    run_until([&] { return *closed; });
    return *closed;
  }
};

TEST(PeerMesh, WorkersOfTheJobLinkUpWithTheirKey) {
  TwoRanks r;
  ASSERT_TRUE(r.link_one(r.key));
  r.one.send(0, std::make_shared<const EncodedFrame>(
                    std::make_shared<const Message>(Params{.iteration = 7})));
  r.run_until([&] { return !r.at_zero.empty(); });
  EXPECT_EQ(r.at_zero, (std::vector<std::int64_t>{7}));
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
}

TEST(PeerMesh, LinksOnThisMachineUseSharedMemoryWhenAsked) {
  TwoRanks r;
  r.zero.set_shared_memory(1 << 20);
  r.one.set_shared_memory(1 << 20);
  ASSERT_TRUE(r.link_one(r.key));
  r.run_until(
      [&] { return r.one.shared_memory_links() == 1 && r.zero.shared_memory_links() == 1; });
  EXPECT_EQ(r.zero.shared_memory_links(), 1);
  EXPECT_EQ(r.one.shared_memory_links(), 1);
  Payload big{.num_elements = 1, .bytes = std::vector<std::uint8_t>(256 * 1024, 7)};
  r.one.send(0, std::make_shared<const EncodedFrame>(
                    std::make_shared<const Message>(Params{.iteration = 9, .values = big})));
  r.run_until([&] { return !r.at_zero.empty(); });
  EXPECT_EQ(r.at_zero, (std::vector<std::int64_t>{9}));
  EXPECT_TRUE(r.errors.empty());
}

TEST(PeerMesh, StrangersAreDroppedAndTheRealPeerStillLinksUp) {
  TwoRanks r;
  // A caller with another key, one claiming a rank it cannot have, one without a proof, and
  // one that sends something else first.
  auto nonce = make_nonce();
  auto wrong_key = make_nonce();
  auto s1 = r.stranger(
      encode_frame(PeerHello{.worker = 1,
                             .node_count = 2,
                             .nonce = nonce,
                             .proof = peer_proof(wrong_key, kProtocolVersion, 1, 0, 2, nonce)}));
  EXPECT_TRUE(r.dropped(s1)) << "a proof under another key";
  auto s2 = r.stranger(
      encode_frame(PeerHello{.worker = 1,
                             .node_count = 2,
                             .nonce = nonce,
                             .proof = peer_proof(r.key, kProtocolVersion, 1, 1, 2, nonce)}));
  EXPECT_TRUE(r.dropped(s2)) << "a proof made for another callee";
  auto s3 = r.stranger(encode_frame(PeerHello{.worker = 1, .node_count = 2}));
  EXPECT_TRUE(r.dropped(s3)) << "no proof";
  auto s4 = r.stranger(encode_frame(Params{.iteration = 1}));
  EXPECT_TRUE(r.dropped(s4)) << "not a PeerHello";
  const auto big = encode_header({.type = MessageType::kPeerHello, .body_bytes = 1 << 19});
  auto s5 = r.stranger(std::vector<std::uint8_t>(big.begin(), big.end()));
  EXPECT_TRUE(r.dropped(s5)) << "an oversized hello";
  EXPECT_FALSE(r.zero_ready);
  EXPECT_TRUE(r.errors.empty()) << "a stranger must not fail the job: " << r.errors.front();

  EXPECT_TRUE(r.link_one(r.key));
  EXPECT_TRUE(r.errors.empty());
}

TEST(PeerMesh, AWorkerWithAnotherJobsKeyCannotLinkUp) {
  TwoRanks r;
  r.one.set_key(make_nonce());
  bool one_failed = false;
  r.one.connect(
      r.addresses, [] {}, [](int, Message&&) {},
      [&](int, const std::string&) { one_failed = true; });
  r.run_until([&] { return one_failed; });
  EXPECT_TRUE(one_failed) << "its link is closed by rank 0";
  EXPECT_FALSE(r.zero_ready);
}

}  // namespace
}  // namespace psgd::net
