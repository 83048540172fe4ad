// The simulator's scheduler, units and network model, with hand-computed cases.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "network/sim/event_queue.h"
#include "network/sim/network_model.h"
#include "network/sim/units.h"
#include "network/sim/virtual_clock.h"

namespace psgd::sim {
namespace {

TEST(EventQueue, RunsEventsInTimeOrderAndTiesInSchedulingOrder) {
  EventQueue q;
  std::vector<std::string> ran;
  q.schedule(2.0, [&] { ran.push_back("c@2"); });
  q.schedule(1.0, [&] { ran.push_back("a@1"); });
  q.schedule(1.0, [&] { ran.push_back("b@1"); });
  q.schedule(0.5, [&] {
    ran.push_back("first@0.5");
    q.schedule(1.0, [&] { ran.push_back("d@1 (scheduled last)"); });
    q.schedule(0.5, [&] { ran.push_back("now@0.5"); });
  });
  while (q.step()) {
  }
  EXPECT_EQ(ran, (std::vector<std::string>{"first@0.5", "now@0.5", "a@1", "b@1",
                                           "d@1 (scheduled last)", "c@2"}));
  EXPECT_DOUBLE_EQ(q.now(), 2.0);
  EXPECT_THROW(q.schedule(1.0, [] {}), Error);  // the past
}

TEST(EventQueue, ManyTiesKeepInsertionOrder) {
  EventQueue q;
  std::vector<int> ran;
  for (int i = 0; i < 1000; ++i)
    q.schedule(static_cast<double>(i % 3), [&ran, i] { ran.push_back(i); });
  while (q.step()) {
  }
  ASSERT_EQ(ran.size(), 1000u);
  for (std::size_t k = 1; k < ran.size(); ++k) {
    const int a = ran[k - 1], b = ran[k];
    EXPECT_TRUE(a % 3 < b % 3 || (a % 3 == b % 3 && a < b)) << a << " before " << b;
  }
}

TEST(Units, ParsesBandwidthsAndDurations) {
  EXPECT_DOUBLE_EQ(parse_bandwidth_bps("1Gbps"), 1e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth_bps("100Mbps"), 1e8);
  EXPECT_DOUBLE_EQ(parse_bandwidth_bps("100Mb/s"), 1e8);
  EXPECT_DOUBLE_EQ(parse_bandwidth_bps("2.5kbps"), 2500);
  EXPECT_DOUBLE_EQ(parse_bandwidth_bps("8000bps"), 8000);
  EXPECT_DOUBLE_EQ(parse_duration_s("100us"), 100e-6);
  EXPECT_DOUBLE_EQ(parse_duration_s("2ms"), 2e-3);
  EXPECT_DOUBLE_EQ(parse_duration_s("1.5s"), 1.5);
  EXPECT_DOUBLE_EQ(parse_duration_s("0"), 0);
  EXPECT_THROW(parse_bandwidth_bps("1G"), ConfigError);
  EXPECT_THROW(parse_bandwidth_bps("0Mbps"), ConfigError);
  EXPECT_THROW(parse_bandwidth_bps("fast"), ConfigError);
  EXPECT_THROW(parse_duration_s("100"), ConfigError);
  EXPECT_THROW(parse_duration_s("-1ms"), ConfigError);
}

// 8000 bit/s moves 1000 bytes in exactly 1 s; latency 0.1 s.
NetworkOptions slow_net() {
  return {.bandwidth_bps = 8000, .latency_s = 0.1};
}

TEST(NetworkModel, DeliveryIsLatencyPlusSizeOverBandwidth) {
  NetworkModel net(2, slow_net());
  const Transmission t = net.send(0, kServerNode, 3.0, 1000);
  EXPECT_DOUBLE_EQ(t.start, 3.0);
  EXPECT_DOUBLE_EQ(t.finish, 4.0);
  EXPECT_DOUBLE_EQ(t.delivery, 4.1);
  // 500 bytes down to worker 1, on idle ports: 0.5 s + 0.1 s.
  EXPECT_DOUBLE_EQ(net.send(kServerNode, 1, 3.0, 500).delivery, 3.6);
}

TEST(NetworkModel, MessagesQueueOnTheServerNicInBothDirections) {
  NetworkModel net(3, slow_net());
  // Uplink: two workers send 1000 bytes at t = 0; the second waits for the server's ingress.
  EXPECT_DOUBLE_EQ(net.send(0, kServerNode, 0.0, 1000).delivery, 1.1);
  const Transmission second = net.send(1, kServerNode, 0.0, 1000);
  EXPECT_DOUBLE_EQ(second.start, 1.0);
  EXPECT_DOUBLE_EQ(second.delivery, 2.1);
  // A third that leaves at 1.5 waits until 2.0.
  EXPECT_DOUBLE_EQ(net.send(2, kServerNode, 1.5, 1000).delivery, 3.1);
  // Downlink is the other direction of a full-duplex NIC: not behind the uplink traffic. A
  // broadcast of one 2000-byte message to 3 workers is 3 transmissions on the server's egress.
  EXPECT_DOUBLE_EQ(net.send(kServerNode, 0, 1.5, 2000).delivery, 3.6);
  EXPECT_DOUBLE_EQ(net.send(kServerNode, 1, 1.5, 2000).delivery, 5.6);
  EXPECT_DOUBLE_EQ(net.send(kServerNode, 2, 1.5, 2000).delivery, 7.6);
}

TEST(NetworkModel, AFasterServerNicDrainsSlowerLinksInParallelOnlyUpToItsOwnRate) {
  // Workers at 8000 bit/s, server at 16000: a worker's message still takes 1 s on its link, and
  // the server's port is held for that whole second (store-and-forward, one at a time).
  NetworkModel net(2, {.bandwidth_bps = 8000, .server_bandwidth_bps = 16000, .latency_s = 0});
  EXPECT_DOUBLE_EQ(net.send(0, kServerNode, 0.0, 1000).delivery, 1.0);
  EXPECT_DOUBLE_EQ(net.send(1, kServerNode, 0.0, 1000).delivery, 2.0);
}

TEST(NetworkModel, JitterIsSeededAndNeverReordersALink) {
  auto run = [](std::uint64_t seed) {
    NetworkModel net(1, {.bandwidth_bps = 8e9, .latency_s = 1e-3, .jitter_s = 5e-3, .seed = seed});
    std::vector<double> d;
    for (int i = 0; i < 50; ++i)
      d.push_back(net.send(0, kServerNode, i * 1e-4, 10).delivery);
    return d;
  };
  const auto a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (std::size_t i = 1; i < a.size(); ++i)
    EXPECT_GE(a[i], a[i - 1]);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_GE(a[i], i * 1e-4 + 1e-3);
  }
}

TEST(NodeClock, StandsStillBetweenEventsAndAdvancesByModelledTime) {
  NodeClock c;  // not measuring: only advance() moves it
  c.begin(2.0);
  EXPECT_DOUBLE_EQ(c.now(), 2.0);
  c.advance(0.25);
  EXPECT_DOUBLE_EQ(c.now(), 2.25);
  c.end();
  EXPECT_DOUBLE_EQ(c.now(), 2.25);
  c.begin(5.0);
  EXPECT_DOUBLE_EQ(c.now(), 5.0);
}

TEST(NodeClock, MeasuringFollowsThreadCpuTimeScaled) {
  NodeClock c(true, 3.0);
  c.begin(1.0);
  volatile double x = 0;
  const double cpu0 = thread_cpu_seconds();
  while (thread_cpu_seconds() - cpu0 < 0.02)
    x = x + 1;
  c.end();
  EXPECT_GE(c.now(), 1.0 + 3.0 * 0.02);
  EXPECT_LT(c.now(), 1.0 + 3.0 * 0.5);
}

}  // namespace
}  // namespace psgd::sim
