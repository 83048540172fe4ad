#pragma once
// Units of the simulator's flags: "--net_bandwidth 1Gbps --net_latency 100us".
//
//   bandwidth  <number><unit>, unit one of bps, Kbps, Mbps, Gbps (decimal: 1 Kbps = 1000 bit/s;
//              the k/m/g are case-insensitive, "b/s" may replace "bps": 100Mb/s)
//   duration   <number><unit>, unit one of s, ms, us, ns; a bare 0 is accepted
//
// Both throw ConfigError naming the text for anything else (a missing unit, a negative value).
#include <string_view>

namespace psgd::sim {

double parse_bandwidth_bps(std::string_view text);  // bits per second, > 0
double parse_duration_s(std::string_view text);     // seconds, >= 0

}  // namespace psgd::sim
