#pragma once
// The sizes the two shared-memory segments are laid out by (tcp/shm_channel.cc, the link's slots;
// shm_allreduce.cc, the allreduce's): pages for what is mapped and reserved, cache lines for the
// words several processes write, so that no two share a line.
#include <cstddef>

namespace psgd::net::shm {

inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kLine = 64;

inline constexpr std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

}  // namespace psgd::net::shm
