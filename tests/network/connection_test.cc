#include "network/tcp/connection.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"

namespace psgd::net {
namespace {

using asio::ip::tcp;

// A listener on a free loopback port and the accepted server-side socket.
struct Loopback {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::shared_ptr<Connection> server;
  std::string error;  // what the server side reported, if anything

  int port() const { return acceptor.local_endpoint().port(); }

  // Accepts one connection and reads frames from it; the first error stops the loop.
  void expect_one(ConnectionOptions options, bool frames_allowed) {
    acceptor.async_accept([this, options, frames_allowed](std::error_code, tcp::socket s) {
      server = std::make_shared<Connection>(std::move(s), options);
      server->start(
          [frames_allowed](Message&&, std::size_t) {
            if (!frames_allowed) ADD_FAILURE() << "a bad frame was decoded";
          },
          [this](const std::string& why) {
            error = why;
            io.stop();
          });
    });
  }
};

TEST(Connection, ExchangesFramesInOrder) {
  Loopback lo;
  std::shared_ptr<Connection> server;
  std::vector<std::int64_t> received;
  lo.acceptor.async_accept([&](std::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    server = std::make_shared<Connection>(std::move(s), ConnectionOptions{});
    server->start(
        [&](Message&& m, std::size_t) {
          received.push_back(std::get<Params>(m).iteration);
          if (received.size() == 3) lo.io.stop();
        },
        [&](const std::string& why) { ADD_FAILURE() << why; });
  });
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  auto client = std::make_shared<Connection>(std::move(socket), ConnectionOptions{});
  client->start([](Message&&, std::size_t) {}, [](const std::string&) {});
  for (int i = 1; i <= 3; ++i)
    client->send(Params{.iteration = i});
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(received, (std::vector<std::int64_t>{1, 2, 3}));
}

// Received payloads view the frame buffer instead of copying it. A payload the handler keeps
// keeps its frame: later frames are read into other buffers and never overwrite it. Payloads the
// handler drops leave the buffer to be reused.
TEST(Connection, ReceivedPayloadsViewTheirFrameAndSurviveLaterFrames) {
  Loopback lo;
  std::shared_ptr<Connection> server;
  constexpr int kFrames = 6;
  constexpr std::size_t kBytes = 256 * 1024;
  std::vector<const std::uint8_t*> dropped;  // where frames 0, 1, 2 were read
  std::vector<Payload> kept;                 // frames 3, 4, 5
  lo.acceptor.async_accept([&](std::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    server =
        std::make_shared<Connection>(std::move(s), ConnectionOptions{.max_body_bytes = 1 << 22});
    server->start(
        [&](Message&& m, std::size_t) {
          auto& g = std::get<Gradient>(m);
          EXPECT_TRUE(g.values.bytes.empty()) << "the payload was copied out of the frame";
          EXPECT_NE(g.values.frame, nullptr);
          if (g.iteration >= 3) {
            kept.push_back(std::move(g.values));
          } else {
            dropped.push_back(g.values.view().data());
          }
          if (static_cast<int>(kept.size() + dropped.size()) == kFrames) lo.io.stop();
        },
        [&](const std::string& why) { ADD_FAILURE() << why; });
  });
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  auto client = std::make_shared<Connection>(std::move(socket), ConnectionOptions{});
  client->start([](Message&&, std::size_t) {}, [](const std::string&) {});
  for (int i = 0; i < kFrames; ++i) {
    Payload p{.num_elements = kBytes, .bytes = std::vector<std::uint8_t>(kBytes)};
    for (std::size_t j = 0; j < kBytes; ++j)
      p.bytes[j] = static_cast<std::uint8_t>(i * 31 + j);
    client->send(Gradient{.iteration = i, .values = std::move(p)});
  }
  lo.io.run_for(std::chrono::seconds(10));
  ASSERT_EQ(kept.size(), 3u);
  ASSERT_EQ(dropped.size(), 3u);
  for (std::size_t k = 0; k < kept.size(); ++k) {
    const int i = static_cast<int>(3 + k);
    const auto v = kept[k].view();
    ASSERT_EQ(v.size(), kBytes);
    for (std::size_t j = 0; j < kBytes; ++j)
      ASSERT_EQ(v[j], static_cast<std::uint8_t>(i * 31 + j)) << "frame " << i << " byte " << j;
  }
  // Dropped frames leave their buffer to the next frame: no allocation per frame.
  EXPECT_EQ(dropped[0], dropped[1]);
  EXPECT_EQ(dropped[1], dropped[2]);
  // Kept frames each hold their own buffer (the first of them reused the dropped frames' one).
  EXPECT_NE(kept[0].view().data(), kept[1].view().data());
  EXPECT_NE(kept[1].view().data(), kept[2].view().data());
}

TEST(Connection, GarbageIsDroppedWithAClearReason) {
  Loopback lo;
  lo.expect_one(ConnectionOptions{}, /*frames_allowed=*/false);
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(socket, asio::buffer(junk));
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_NE(lo.error.find("not a psgd peer"), std::string::npos) << lo.error;
}

TEST(Connection, OversizedFrameIsRefusedWithoutReadingIt) {
  Loopback lo;
  lo.expect_one(ConnectionOptions{.max_body_bytes = 1024}, /*frames_allowed=*/false);
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  const auto h = encode_header({.type = MessageType::kGradient, .body_bytes = 0xFFFFFFFFull});
  asio::write(socket, asio::buffer(h));
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_NE(lo.error.find("exceeds the limit"), std::string::npos) << lo.error;
}

TEST(Connection, SilentPeerTimesOut) {
  Loopback lo;
  lo.expect_one(ConnectionOptions{.read_timeout_s = 0.2}, /*frames_allowed=*/true);
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  // Half a header, then silence.
  const auto h = encode_header({.type = MessageType::kHello, .body_bytes = 4});
  asio::write(socket, asio::buffer(h.data(), 8));
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_NE(lo.error.find("timeout"), std::string::npos) << lo.error;
}

// A frame that takes longer than the timeout to arrive, because the link is slow or shared, is
// not a silent peer: only a stretch without a byte is (8 workers sharing a 10 Mbit/s link took
// more than 10 s per parameter frame, and the workers gave up on a live server).
TEST(Connection, AFrameSlowerThanTheTimeoutIsNotSilence) {
  Loopback lo;
  int delivered = 0;
  lo.acceptor.async_accept([&](std::error_code, tcp::socket s) {
    lo.server =
        std::make_shared<Connection>(std::move(s), ConnectionOptions{.read_timeout_s = 0.3});
    lo.server->start(
        [&](Message&& m, std::size_t) {
          EXPECT_EQ(std::get<ErrorMessage>(m).text.size(), 100000u);
          ++delivered;
          lo.io.stop();
        },
        [&](const std::string& why) {
          lo.error = why;
          lo.io.stop();
        });
  });
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  const auto frame = encode_frame(Message(ErrorMessage{std::string(100000, 'x')}));
  std::thread writer([&] {
    // Ten pieces 0.12 s apart: 1.2 s for the frame, never 0.3 s without a byte.
    const std::size_t piece = frame.size() / 10 + 1;
    for (std::size_t at = 0; at < frame.size(); at += piece) {
      std::error_code ec;  // a reader that gave up closes the link: stop writing, fail below
      asio::write(socket, asio::buffer(frame.data() + at, std::min(piece, frame.size() - at)), ec);
      if (ec) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(120));
    }
  });
  lo.io.run_for(std::chrono::seconds(10));
  writer.join();
  EXPECT_EQ(delivered, 1) << lo.error;
  EXPECT_EQ(lo.error, "");
}

TEST(Connection, APeerSilentInTheMiddleOfAFrameTimesOut) {
  Loopback lo;
  lo.expect_one(ConnectionOptions{.read_timeout_s = 0.3}, /*frames_allowed=*/false);
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  const auto frame = encode_frame(Message(ErrorMessage{std::string(100000, 'x')}));
  asio::write(socket, asio::buffer(frame.data(), frame.size() / 2));
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_NE(lo.error.find("timeout"), std::string::npos) << lo.error;
}

TEST(Connection, PeerClosingIsReported) {
  Loopback lo;
  lo.expect_one(ConnectionOptions{}, /*frames_allowed=*/true);
  {
    auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
    lo.io.run_for(std::chrono::milliseconds(100));
  }
  lo.io.run_for(std::chrono::seconds(2));
  EXPECT_NE(lo.error.find("closed the connection"), std::string::npos) << lo.error;
}

TEST(Connection, TypeFilterRefusesAFrameBeforeItsBodyIsRead) {
  Loopback lo;
  lo.acceptor.async_accept([&](std::error_code, tcp::socket s) {
    lo.server = std::make_shared<Connection>(std::move(s), ConnectionOptions{});
    lo.server->set_type_filter([](MessageType t) { return t == MessageType::kAuthHello; });
    lo.server->start([](Message&&, std::size_t) { ADD_FAILURE() << "a refused frame decoded"; },
                     [&](const std::string& why) {
                       lo.error = why;
                       lo.io.stop();
                     });
  });
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  // A Gradient header whose body never comes: refused on the header alone.
  const auto h = encode_header({.type = MessageType::kGradient, .body_bytes = 64});
  asio::write(socket, asio::buffer(h));
  lo.io.run_for(std::chrono::seconds(5));
  EXPECT_NE(lo.error.find("not allowed"), std::string::npos) << lo.error;
}

TEST(Connection, HeartbeatsKeepAnIdleLinkAliveAndAreNotDelivered) {
  Loopback lo;
  lo.acceptor.async_accept([&](std::error_code, tcp::socket s) {
    lo.server =
        std::make_shared<Connection>(std::move(s), ConnectionOptions{.read_timeout_s = 0.5});
    lo.server->start([](Message&&, std::size_t) { ADD_FAILURE() << "a heartbeat was delivered"; },
                     [&](const std::string& why) { lo.error = why; });
  });
  auto socket = dial(lo.io, "127.0.0.1", lo.port(), 5);
  auto client = std::make_shared<Connection>(std::move(socket), ConnectionOptions{});
  client->start([](Message&&, std::size_t) {}, [](const std::string&) {});
  client->start_heartbeats(0.1);
  lo.io.run_for(std::chrono::milliseconds(1500));  // three read timeouts
  EXPECT_EQ(lo.error, "");
  client->close();  // silence from now on
  lo.io.run_for(std::chrono::seconds(2));
  EXPECT_NE(lo.error, "");
}

TEST(Dial, ClosedPortFailsWithinTheTimeout) {
  asio::io_context io;
  int port;
  {
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    dial(io, "127.0.0.1", port, 0.5);
    FAIL() << "connected to a closed port";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace psgd::net

namespace psgd::net {
namespace {

// The end of a job: the server sends its last frame and closes while a worker is busy and then
// sends more. The worker must still read that last frame, not die of a broken pipe.
TEST(Connection, APeerStillWritingReadsTheLastFrameOfAClosingLink) {
  asio::io_context server_io;
  tcp::acceptor acceptor(server_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::shared_ptr<Connection> server;
  acceptor.async_accept([&](std::error_code, tcp::socket s) {
    server =
        std::make_shared<Connection>(std::move(s), ConnectionOptions{.max_body_bytes = 1 << 24});
    server->start([](Message&&, std::size_t) {}, [](const std::string&) {});
    server->send(Params{.iteration = 1});
    server->send(Finish{.status = "completed"});
    server->close_after_writes();
  });
  std::thread server_thread([&] { server_io.run_for(std::chrono::seconds(10)); });

  asio::io_context io;
  auto client = std::make_shared<Connection>(
      dial(io, "127.0.0.1", acceptor.local_endpoint().port(), 5), ConnectionOptions{});
  std::string got, error;
  client->start(
      [&](Message&& m, std::size_t) {
        if (std::holds_alternative<Params>(m)) {
          // The worker computes; meanwhile the server finishes and closes its side. Then the
          // worker sends its gradient, from inside this handler as the client does.
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          Gradient g;
          g.values.num_elements = 1 << 20;
          g.values.bytes.resize(4 << 20);
          for (int i = 0; i < 4; ++i)
            client->send(g);  // 16 MB the server will not use
          return;
        }
        got = std::get<Finish>(m).status;
        io.stop();
      },
      [&](const std::string& why) {
        error = why;
        io.stop();
      });
  io.run_for(std::chrono::seconds(10));
  client->close();
  server_io.stop();
  server_thread.join();
  EXPECT_EQ(got, "completed") << error;
}

}  // namespace
}  // namespace psgd::net
