// The liveness rule (network/liveness.h): a side's heartbeats come at least three times within the
// other side's --dead_after, whatever its own --heartbeat_interval; checked as arithmetic and on
// a real loopback link kept idle for several times the receiver's --dead_after.
#include "network/liveness.h"

#include <gtest/gtest.h>

#include <cmath>

#include "network/tcp/connection.h"

namespace psgd::net {
namespace {

using asio::ip::tcp;

TEST(Liveness, OwnIntervalUnlessThePeersDeadAfterNeedsShorter) {
  EXPECT_EQ(heartbeat_interval_for(2, 10), 2);       // the defaults agree
  EXPECT_EQ(heartbeat_interval_for(2, 6), 2);        // exactly three beats in the peer's patience
  EXPECT_EQ(heartbeat_interval_for(2, 1.5), 0.5);    // the defect's server: --dead_after 1.5
  EXPECT_EQ(heartbeat_interval_for(20, 3), 1);       // a client's --heartbeat_interval 20 by hand
  EXPECT_EQ(heartbeat_interval_for(0.3, 1.5), 0.3);  // already often enough: never lengthened
  EXPECT_EQ(heartbeat_interval_for(2, 1e-6), kMinHeartbeatInterval);  // a floor, not a storm
  for (const double bad : {0.0, -3.0, std::nan(""), HUGE_VAL})
    EXPECT_EQ(heartbeat_interval_for(2, bad), 2) << bad;
}

// The property the rule exists for. A Connection sends a heartbeat when a check, every interval
// I, finds the link idle for 0.9 I: two frames are at most 1.9 I apart. For every pair of flags
// that longest gap stays within two thirds of the peer's --dead_after.
TEST(Liveness, TheLongestGapBetweenHeartbeatsIsWellWithinThePeersDeadAfter) {
  for (const double own : {0.05, 0.3, 1.0, 2.0, 5.0, 20.0, 600.0}) {
    for (const double dead_after : {0.1, 0.5, 1.0, 1.5, 3.0, 10.0, 60.0, 3600.0}) {
      const double beat = heartbeat_interval_for(own, dead_after);
      EXPECT_LE(beat, own);
      EXPECT_LT(1.9 * beat, 2.0 / 3.0 * dead_after) << own << " " << dead_after;
    }
  }
}

// Two Connections on loopback: the receiver gives up after `dead_after` seconds of silence, the
// sender beats at `interval`; nothing else is sent for `idle` seconds. Returns the receiver's
// error ("" when the link stayed alive).
std::string idle_link(double interval, double dead_after, std::chrono::milliseconds idle) {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::shared_ptr<Connection> receiver;
  std::string error;
  acceptor.async_accept([&](std::error_code, tcp::socket s) {
    receiver =
        std::make_shared<Connection>(std::move(s), ConnectionOptions{.read_timeout_s = dead_after});
    receiver->start([](Message&&, std::size_t) {}, [&](const std::string& why) { error = why; });
  });
  auto sender = std::make_shared<Connection>(
      dial(io, "127.0.0.1", acceptor.local_endpoint().port(), 5), ConnectionOptions{});
  sender->start([](Message&&, std::size_t) {}, [](const std::string&) {});
  sender->start_heartbeats(interval);
  io.run_for(idle);
  sender->close();
  if (receiver) receiver->close();
  return error;
}

// A receiver with --dead_after 1 and a sender whose own --heartbeat_interval is the default 2 s:
// at its own interval the idle link dies (the defect), at the rule's it lives through 3 s.
TEST(Liveness, AnIdleLinkLivesAtTheRulesIntervalAndDiesAtTheSendersOwn) {
  EXPECT_EQ(idle_link(heartbeat_interval_for(2, 1), 1, std::chrono::milliseconds(3000)), "");
  EXPECT_NE(idle_link(2, 1, std::chrono::milliseconds(3000)), "");
}

}  // namespace
}  // namespace psgd::net
