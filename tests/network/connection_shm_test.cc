// A Connection with a shared-memory channel (network/tcp/shm_channel.h) delivers the same
// messages, in the same order, as one without.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "core/error.h"
#include "network/messages/link.h"
#include "network/tcp/connection.h"

namespace psgd::net {
namespace {

using asio::ip::tcp;
constexpr std::size_t kBig = 256 * 1024;  // above Connection::kShmMinBody

Gradient big_gradient(int i) {
  Payload p{.num_elements = kBig, .bytes = std::vector<std::uint8_t>(kBig)};
  for (std::size_t j = 0; j < kBig; ++j)
    p.bytes[j] = static_cast<std::uint8_t>(i * 31 + j * 7);
  return Gradient{.iteration = i, .values = std::move(p)};
}

bool intact(const Gradient& g) {
  const auto v = g.values.view();
  if (v.size() != kBig) return false;
  for (std::size_t j = 0; j < kBig; ++j) {
    if (v[j] != static_cast<std::uint8_t>(g.iteration * 31 + j * 7)) return false;
  }
  return true;
}

std::size_t shm_files_of_this_process() {
  const std::string prefix = fmt::format("psgd-{}-", ::getpid());
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
    n += e.path().filename().string().rfind(prefix, 0) == 0;
  return n;
}

// A dialled link: `client` offers, `server` may accept; both run on `io`.
struct Link {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::shared_ptr<Connection> server, client;
  std::vector<Message> at_server, at_client;
  std::string error;

  explicit Link(bool server_accepts) {
    acceptor.async_accept([this, server_accepts](std::error_code ec, tcp::socket s) {
      ASSERT_FALSE(ec);
      server =
          std::make_shared<Connection>(std::move(s), ConnectionOptions{.max_body_bytes = 1 << 22});
      server->accept_shared_memory(server_accepts);
      server->start([this](Message&& m, std::size_t) { at_server.push_back(std::move(m)); },
                    [this](const std::string& why) { error = why; });
    });
    client =
        std::make_shared<Connection>(dial(io, "127.0.0.1", acceptor.local_endpoint().port(), 5),
                                     ConnectionOptions{.max_body_bytes = 1 << 22});
    client->start([this](Message&& m, std::size_t) { at_client.push_back(std::move(m)); },
                  [this](const std::string& why) { error = why; });
  }

  // Runs until `done` or 5 s.
  template <class F>
  void run_until(F done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < give_up)
      io.run_one_for(std::chrono::milliseconds(50));
  }
};

TEST(ConnectionShm, LargeFramesGoThroughSharedMemoryAndSmallOnesOverTheSocketInOrder) {
  Link link(/*server_accepts=*/true);
  ASSERT_TRUE(link.client->offer_shared_memory(kBig + 4096, 3));
  link.run_until([&] { return link.client->shared_memory(); });
  ASSERT_TRUE(link.client->shared_memory());
  ASSERT_TRUE(link.server->shared_memory());
  EXPECT_EQ(shm_files_of_this_process(), 0u) << "the name stays in /dev/shm once the link is up";

  for (int i = 0; i < 6; ++i) {
    link.client->send(big_gradient(i));
    link.client->send(Params{.iteration = 100 + i});  // small: over the socket
  }
  link.run_until([&] { return link.at_server.size() == 12; });
  ASSERT_EQ(link.at_server.size(), 12u) << link.error;
  for (int i = 0; i < 6; ++i) {
    const auto& g = std::get<Gradient>(link.at_server[2 * i]);
    EXPECT_EQ(g.iteration, i);
    EXPECT_TRUE(intact(g)) << "frame " << i;
    EXPECT_EQ(std::get<Params>(link.at_server[2 * i + 1]).iteration, 100 + i);
  }
  // The receiver keeps all six messages, so only the first three found a free slot; the rest
  // went over the socket, in their place in the order.
  EXPECT_EQ(link.client->frames_via_shared_memory(), 3u);
  // Frames are counted at their full size either way.
  EXPECT_EQ(link.server->bytes_received(), link.client->bytes_sent());

  // Released messages free their slots for the next frames.
  link.at_server.clear();
  for (int i = 6; i < 9; ++i)
    link.client->send(big_gradient(i));
  link.run_until([&] { return link.at_server.size() == 3; });
  ASSERT_EQ(link.at_server.size(), 3u) << link.error;
  for (const auto& m : link.at_server)
    EXPECT_TRUE(intact(std::get<Gradient>(m)));
  EXPECT_EQ(link.client->frames_via_shared_memory(), 6u);
  EXPECT_EQ(link.error, "");
}

TEST(ConnectionShm, TheAcceptingEndSendsThroughSharedMemoryToo) {
  Link link(/*server_accepts=*/true);
  ASSERT_TRUE(link.client->offer_shared_memory(kBig + 4096, 2));
  link.run_until([&] { return link.client->shared_memory(); });
  ASSERT_TRUE(link.server->shared_memory());
  link.server->send(big_gradient(1));
  link.run_until([&] { return !link.at_client.empty(); });
  ASSERT_EQ(link.at_client.size(), 1u) << link.error;
  EXPECT_TRUE(intact(std::get<Gradient>(link.at_client[0])));
  EXPECT_EQ(link.server->frames_via_shared_memory(), 1u);
}

TEST(ConnectionShm, AnOfferThePeerDeclinesLeavesTheLinkOnTcp) {
  Link link(/*server_accepts=*/false);
  ASSERT_TRUE(link.client->offer_shared_memory(kBig + 4096, 3));
  link.client->send(big_gradient(7));
  link.run_until([&] { return !link.at_server.empty(); });
  link.run_until([&] { return shm_files_of_this_process() == 0; });
  ASSERT_EQ(link.at_server.size(), 1u) << link.error;
  EXPECT_TRUE(intact(std::get<Gradient>(link.at_server[0])));
  EXPECT_FALSE(link.client->shared_memory());
  EXPECT_FALSE(link.server->shared_memory());
  EXPECT_EQ(link.client->frames_via_shared_memory(), 0u);
  EXPECT_EQ(shm_files_of_this_process(), 0u) << "the declined segment is removed";
  EXPECT_EQ(link.error, "");
}

TEST(ConnectionShm, ANoticeOnALinkWithoutSharedMemoryIsRefused) {
  Link link(/*server_accepts=*/true);
  link.client->send_frame(std::make_shared<const EncodedFrame>(encode_frame(ShmFrame{
      .slot = 0, .type = static_cast<std::uint16_t>(MessageType::kGradient), .body_bytes = kBig})));
  link.run_until([&] { return !link.error.empty(); });
  EXPECT_NE(link.error.find("without shared memory"), std::string::npos) << link.error;
  EXPECT_TRUE(link.at_server.empty());
}

TEST(ConnectionShm, ANoticeForASlotNeverFilledIsRefused) {
  Link link(/*server_accepts=*/true);
  ASSERT_TRUE(link.client->offer_shared_memory(kBig + 4096, 3));
  link.run_until([&] { return link.client->shared_memory(); });
  ASSERT_TRUE(link.server->shared_memory());
  link.client->send_frame(std::make_shared<const EncodedFrame>(encode_frame(ShmFrame{
      .slot = 1, .type = static_cast<std::uint16_t>(MessageType::kGradient), .body_bytes = 1000})));
  link.run_until([&] { return !link.error.empty(); });
  EXPECT_NE(link.error.find("not filled"), std::string::npos) << link.error;
  EXPECT_TRUE(link.at_server.empty());
}

TEST(ConnectionShm, ANoticeCannotSmuggleATypeTheFilterRefuses) {
  Link link(/*server_accepts=*/true);
  ASSERT_TRUE(link.client->offer_shared_memory(kBig + 4096, 3));
  link.run_until([&] { return link.client->shared_memory(); });
  ASSERT_TRUE(link.server->shared_memory());
  link.server->set_type_filter([](MessageType t) { return t != MessageType::kGradient; });
  link.client->send(big_gradient(3));
  link.run_until([&] { return !link.error.empty(); });
  EXPECT_NE(link.error.find("not allowed"), std::string::npos) << link.error;
  EXPECT_TRUE(link.at_server.empty());
}

}  // namespace
}  // namespace psgd::net
