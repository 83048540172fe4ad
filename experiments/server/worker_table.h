#pragma once
// WorkerTable: who holds each worker slot of a job, and in which state (the server's membership).
//
//   joining   join() gives an authenticated client the first free slot (none free: the job is
//             full); leave() frees a slot whose client went away before the job started
//   loading   set_ready() once the worker's data and model are up (peer-to-peer: set_peers_up())
//   training  lose() marks a slot lost for good when its worker dies and the strategy carries on;
//             take_over() gives a lost slot to a new client, which loads (rejoining) until
//             rejoined(), or is dropped again with drop_replacement()
//
// Socket-free: `Link` is the driver's handle of a worker's connection (net::Connection in
// init_server, anything in tests), held but never used here. Threading: the driver's thread.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "network/messages.h"

namespace psgd {

template <class Link>
class WorkerTable {
 public:
  struct Slot {
    std::shared_ptr<Link> link;  // null: nobody holds the slot now
    Hello hello;
    std::string address;                // the IP address the worker connected from
    std::vector<std::int64_t> samples;  // rows of the training set it holds
    bool ready = false;                 // data loaded, model built
    bool lost = false;                  // died during training; the strategy carried on without it
    bool rejoining = false;  // a replacement loading its data; it is sent nothing of the strategy's
    bool offered = false;    // --ship_data: its DataOffer has arrived
    int peer_port = 0;       // peer-to-peer strategies: where it accepts peer links
    bool peers_up = false;   // peer-to-peer strategies: its PeersUp has arrived
    const std::string& host() const { return hello.host; }
    // How the server's messages name the worker's machine: the address it connected from, which
    // tells workers apart even where they share a host name (network namespaces, containers, one
    // machine), and the host name it gave.
    std::string where() const { return address + ", host " + hello.host; }
  };

  explicit WorkerTable(int node_count) : slots_(static_cast<std::size_t>(node_count)) {}

  int size() const { return static_cast<int>(slots_.size()); }
  Slot& operator[](int w) { return slots_.at(static_cast<std::size_t>(w)); }
  const Slot& operator[](int w) const { return slots_.at(static_cast<std::size_t>(w)); }

  // The slot `link` holds, or -1.
  int find(const Link* link) const {
    for (std::size_t w = 0; w < slots_.size(); ++w)
      if (slots_[w].link.get() == link) return static_cast<int>(w);
    return -1;
  }

  // Before training: the first free slot for an authenticated client, or -1 (the job is full).
  int join(std::shared_ptr<Link> link, const Hello& hello, std::string address) {
    auto it = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.link; });
    if (it == slots_.end()) return -1;
    *it = Slot{.link = std::move(link), .hello = hello, .address = std::move(address)};
    return static_cast<int>(it - slots_.begin());
  }
  // Before training: the slot's client went away; the slot is free again.
  void leave(int w) { (*this)[w] = Slot{}; }

  void set_ready(int w, int peer_port) {
    (*this)[w].ready = true;
    (*this)[w].peer_port = peer_port;
  }
  void set_peers_up(int w) { (*this)[w].peers_up = true; }

  // During training: the worker died and the strategy carries on without it.
  void lose(int w) {
    Slot& s = (*this)[w];
    s.link.reset();
    s.lost = true;
    s.ready = false;
  }
  // During training: a new client takes over the first lost slot, or -1 when none is free. It
  // holds that worker's data and continues its batch order; it loads until rejoined().
  int take_over(std::shared_ptr<Link> link, const Hello& hello, std::string address) {
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.lost && !s.link; });
    if (it == slots_.end()) return -1;
    it->link = std::move(link);
    it->hello = hello;
    it->address = std::move(address);
    it->rejoining = true;
    it->ready = false;
    it->offered = false;
    return static_cast<int>(it - slots_.begin());
  }
  void rejoined(int w) {
    Slot& s = (*this)[w];
    s.rejoining = false;
    s.lost = false;
    s.ready = true;
  }
  // The replacement failed before it was ready: the slot is lost (and free) again.
  void drop_replacement(int w) {
    Slot& s = (*this)[w];
    s.link.reset();
    s.rejoining = false;
    s.ready = false;
  }

  int joined() const {
    return count([](const Slot& s) { return s.link != nullptr; });
  }
  int ready() const {
    return count([](const Slot& s) { return s.ready; });
  }
  bool all_ready() const { return ready() == size(); }
  bool all_peers_up() const {
    return count([](const Slot& s) { return s.peers_up; }) == size();
  }
  bool all_lost() const {
    return count([](const Slot& s) { return s.lost; }) == size();
  }
  int present() const {
    return count([](const Slot& s) { return !s.lost; });
  }
  // Workers holding a slot on `host` now.
  int on_host(const std::string& host) const {
    return count([&](const Slot& s) { return s.link && s.hello.host == host; });
  }
  std::vector<int> lost_workers() const {
    std::vector<int> out;
    for (std::size_t w = 0; w < slots_.size(); ++w)
      if (slots_[w].lost) out.push_back(static_cast<int>(w));
    return out;
  }
  std::vector<std::string> hosts() const {
    std::vector<std::string> out;
    for (const Slot& s : slots_)
      out.push_back(s.hello.host);
    return out;
  }

 private:
  template <class P>
  int count(P p) const {
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), p));
  }
  std::vector<Slot> slots_;
};

}  // namespace psgd
