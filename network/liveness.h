#pragma once
// How the two ends of a worker's link to the server keep each other alive: one rule, used by
// both sides (experiments/server and experiments/client).
//
// Each side has two flags: --heartbeat_interval (how often it sends a heartbeat on an idle link)
// and --dead_after (how long it waits for a silent peer before it gives the peer up). The first is
// about what a side sends, the second about what it receives, so each only makes sense against the
// OTHER side's value. In the handshake each side therefore tells the other its --dead_after
// (AuthChallenge.dead_after, Hello.dead_after), and each sends its heartbeats on that link at
// heartbeat_interval_for(its own --heartbeat_interval, the peer's --dead_after): never so rarely
// that the peer would take a healthy, idle process for dead. A side that shortens its own flag
// says so in one line. (MQTT 5's Server Keep Alive makes the same choice: the receiver's patience
// decides how often the sender must speak.)
//
// Why a third: Connection::start_heartbeats(I) checks the link every I seconds and sends when it
// has been idle for 0.9 I, so two frames may be up to 1.9 I apart, plus scheduling delays. With
// I <= dead_after / 3 the longest gap is under two thirds of the peer's --dead_after.
#include <algorithm>

namespace psgd::net {

// Heartbeats fit at least this many times into the peer's --dead_after.
inline constexpr double kHeartbeatsPerDeadAfter = 3;
// Never more often than this (seconds), whatever the peer asks: a bound, not a setting.
inline constexpr double kMinHeartbeatInterval = 0.01;

// A --dead_after a peer may announce: positive and finite.
constexpr bool valid_dead_after(double seconds) {
  return seconds > 0 && seconds < 1e300;  // rejects NaN and infinity too
}

// The interval at which a side sends heartbeats on one link: its own --heartbeat_interval
// `own_s`, shortened to a third of the peer's --dead_after `peer_dead_after_s` when that is
// shorter (never below kMinHeartbeatInterval). A peer_dead_after_s that is not valid_dead_after
// leaves own_s (the handshakes refuse such a peer before this is asked).
inline double heartbeat_interval_for(double own_s, double peer_dead_after_s) {
  if (!valid_dead_after(peer_dead_after_s)) return own_s;
  return std::min(own_s,
                  std::max(kMinHeartbeatInterval, peer_dead_after_s / kHeartbeatsPerDeadAfter));
}

}  // namespace psgd::net
