// The simulator's scheduler, units and network model, with hand-computed cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "network/sim/event_queue.h"
#include "network/sim/network_model.h"
#include "network/sim/units.h"
#include "network/sim/virtual_clock.h"

namespace psgd::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

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

// 8000 bit/s moves 1000 bytes in exactly 1 s; latency 0.1 s; no packet headers, equal shares.
NetworkOptions slow_net() {
  return {.bandwidth_bps = 8000, .latency_s = 0.1, .mtu = 0, .unfairness = 0};
}

struct Msg {
  double at;
  int from, to;
  std::uint64_t bytes;
};

// Sends `msgs` (in time order) as a simulator would, advancing the model between sends, until
// everything has left; returns the deliveries by message id (ids count on from earlier calls).
std::map<std::uint64_t, Delivery> run(NetworkModel& net, const std::vector<Msg>& msgs) {
  std::map<std::uint64_t, Delivery> out;
  std::size_t i = 0;
  while (true) {
    const double send_at = i < msgs.size() ? msgs[i].at : kInf;
    const double finish_at = net.next_finish();
    if (send_at == kInf && finish_at == kInf) break;
    if (finish_at <= send_at) {
      for (const Delivery& d : net.advance(finish_at))
        EXPECT_TRUE(out.emplace(d.id, d).second) << "message " << d.id << " left twice";
    } else {
      net.send(msgs[i].from, msgs[i].to, send_at, msgs[i].bytes);
      ++i;
    }
  }
  EXPECT_EQ(out.size(), msgs.size());
  return out;
}

TEST(NetworkModel, DeliveryIsLatencyPlusSizeOverBandwidth) {
  NetworkModel net(2, slow_net());
  auto d = run(net, {{3.0, 0, kServerNode, 1000}});
  EXPECT_DOUBLE_EQ(d[0].start, 3.0);
  EXPECT_DOUBLE_EQ(d[0].finish, 4.0);
  EXPECT_DOUBLE_EQ(d[0].delivery, 4.1);
  // 500 bytes down to worker 1 on idle links: 0.5 s + 0.1 s.
  d = run(net, {{5.0, kServerNode, 1, 500}});
  EXPECT_DOUBLE_EQ(d[1].delivery, 5.6);
}

TEST(NetworkModel, MessagesCrossingTheServerNicAtOnceShareIt) {
  NetworkModel net(3, slow_net());
  // Two gradients at t = 0 share the server's ingress (500 bytes/s each) until a third joins at
  // 1.5 (250 bytes left each): three ways, 333 bytes/s, so the two finish at 2.25 and the third,
  // with 750 left, alone at 3.0.
  auto d = run(
      net, {{0.0, 0, kServerNode, 1000}, {0.0, 1, kServerNode, 1000}, {1.5, 2, kServerNode, 1000}});
  EXPECT_NEAR(d[0].finish, 2.25, 1e-12);
  EXPECT_NEAR(d[1].finish, 2.25, 1e-12);
  EXPECT_NEAR(d[2].finish, 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(d[2].start, 1.5);
}

TEST(NetworkModel, ABroadcastSharesTheServersEgressAndTheUplinkIsTheOtherDirection) {
  NetworkModel net(3, slow_net());
  // 2000 bytes to each of 3 workers: 6000 bytes through the egress, all done at 6 s; a gradient
  // sent meanwhile crosses the server's ingress, which is free: 1 s.
  auto d = run(net, {{0.0, kServerNode, 0, 2000},
                     {0.0, kServerNode, 1, 2000},
                     {0.0, kServerNode, 2, 2000},
                     {0.0, 0, kServerNode, 1000}});
  for (std::uint64_t k = 0; k < 3; ++k)
    EXPECT_NEAR(d[k].delivery, 6.1, 1e-12) << k;
  EXPECT_NEAR(d[3].delivery, 1.1, 1e-12);
}

TEST(NetworkModel, RatesAreMaxMinFairAcrossLinksOfDifferentSpeeds) {
  // Server at 16000 bit/s: two workers at 8000 each use their whole link (1 s); a third makes
  // the server's ingress the bottleneck (5333 bit/s each: 1.5 s).
  NetworkOptions o = slow_net();
  o.server_bandwidth_bps = 16000;
  {
    NetworkModel net(3, o);
    auto d = run(net, {{0.0, 0, kServerNode, 1000}, {0.0, 1, kServerNode, 1000}});
    EXPECT_NEAR(d[0].finish, 1.0, 1e-12);
    EXPECT_NEAR(d[1].finish, 1.0, 1e-12);
  }
  {
    NetworkModel net(3, o);
    auto d = run(
        net,
        {{0.0, 0, kServerNode, 1000}, {0.0, 1, kServerNode, 1000}, {0.0, 2, kServerNode, 1000}});
    for (std::uint64_t k = 0; k < 3; ++k)
      EXPECT_NEAR(d[k].finish, 1.5, 1e-12) << k;
  }
  // A slow host (2000 bit/s) takes what its link allows; the other gets the rest of the
  // server's 8000: 6000 bit/s, so 1000 bytes in 4/3 s, then the slow one alone at 4 s.
  o = slow_net();
  o.worker_bandwidth_bps = {8000, 2000};
  NetworkModel net(2, o);
  auto d = run(net, {{0.0, 0, kServerNode, 1000}, {0.0, 1, kServerNode, 1000}});
  EXPECT_NEAR(d[0].finish, 4.0 / 3.0, 1e-12);
  EXPECT_NEAR(d[1].finish, 4.0, 1e-12);
}

TEST(NetworkModel, MessagesOfOnePairTravelOneAfterTheOther) {
  // One TCP connection per pair: the second message starts when the first has left.
  NetworkModel net(1, slow_net());
  auto d = run(net, {{0.0, 0, kServerNode, 1000}, {0.0, 0, kServerNode, 1000}});
  EXPECT_NEAR(d[0].finish, 1.0, 1e-12);
  EXPECT_NEAR(d[1].start, 1.0, 1e-12);
  EXPECT_NEAR(d[1].finish, 2.0, 1e-12);
}

TEST(NetworkModel, PacketHeadersCostRate) {
  // MTU 1500: 1448 bytes of data per packet of 1514 bytes on the link.
  NetworkOptions o = slow_net();
  o.mtu = 1500;
  o.bandwidth_bps = 1514 * 8;
  NetworkModel net(1, o);
  EXPECT_DOUBLE_EQ(net.wire_bytes(1448), 1514);
  EXPECT_DOUBLE_EQ(net.wire_bytes(1449), 1449 + 2 * 66);
  EXPECT_DOUBLE_EQ(net.wire_bytes(814160), 814160 + 563 * 66);  // an MLP gradient: +4.6 %
  auto d = run(net, {{0.0, 0, kServerNode, 1448 * 10}});
  EXPECT_NEAR(d[0].finish, 10.0, 1e-12);
}

TEST(NetworkModel, UnfairSharesAreSeededAndConserveTheLink) {
  auto finishes = [](std::uint64_t seed) {
    NetworkOptions o = slow_net();
    o.unfairness = 0.5;
    o.seed = seed;
    NetworkModel net(4, o);
    std::vector<Msg> msgs;
    for (int w = 0; w < 4; ++w)
      msgs.push_back({0.0, w, kServerNode, 1000});
    std::vector<double> f;
    for (const auto& [id, d] : run(net, msgs))
      f.push_back(d.finish);
    return f;
  };
  const auto a = finishes(7), b = finishes(7), c = finishes(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The link is never idle while there is work: the last finishes when a fair share would (4 s);
  // with weights within [0.5, 1.5] the first is done after 4 * 0.5 / (0.5 + 3 * 1.5) s at least.
  for (const auto& f : {a, c}) {
    EXPECT_NEAR(*std::max_element(f.begin(), f.end()), 4.0, 1e-9);
    EXPECT_GE(*std::min_element(f.begin(), f.end()), 4.0 * 0.5 / 5.0);
    EXPECT_LT(*std::min_element(f.begin(), f.end()), 4.0);
  }
}

TEST(NetworkModel, JitterIsSeededAndNeverReordersALink) {
  auto deliveries = [](std::uint64_t seed) {
    NetworkModel net(1, {.bandwidth_bps = 8e9, .latency_s = 1e-3, .jitter_s = 5e-3, .seed = seed});
    std::vector<Msg> msgs;
    for (int i = 0; i < 50; ++i)
      msgs.push_back({i * 1e-4, 0, kServerNode, 10});
    std::vector<double> d;
    for (const auto& [id, x] : run(net, msgs))
      d.push_back(x.delivery);
    return d;
  };
  const auto a = deliveries(7), b = deliveries(7), c = deliveries(8);
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
