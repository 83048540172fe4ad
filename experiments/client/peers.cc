// A worker's links with its peers (experiments/client/driver.h): the peer mesh of the ring
// allreduce and the all-to-all exchange, or the Gloo or shared-memory group.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <chrono>

#include "core/error.h"
#include "experiments/client/driver.h"
#include "experiments/format.h"
#include "network/shm_allreduce.h"

namespace psgd {

void Client::on_peer_table(const PeerTable& table) {
  if (collective_ && collective_->name() == "shm") {
    if (table.key.size() != net::kAuthNonceBytes) {
      give_up("the server's PeerTable has no valid peer key", true);
      return;
    }
    // Worker 0 creates the segment, the others wait for it: on a thread of its own, as Gloo's.
    const double t0 = clock_.now();
    const std::string name = net::shm_allreduce_name(table.key);
    // The collective runs on the compute thread (AllreduceWorker::compute_detached), so the
    // event thread keeps the links alive. A wait for a worker that is stopped, not dead, or for a
    // worker 0 that never made the segment, ends when this client's run does (the server ended
    // it, or a signal).
    background(
        [this, name, over = run_over_] {
          collective_->group = net::ShmAllreduce::join(
              name, worker_, spec_.node_count, job_.num_parameters, spec_.io_timeout,
              [over]() -> std::string { return over->load() ? "this worker's run ended" : ""; });
        },
        [this, t0] {
          say(fmt::format("joined the shared-memory allreduce of {} in {}", spec_.node_count,
                          fmt_duration(clock_.now() - t0)));
          conn_->send(PeersUp{.links = spec_.node_count - 1});
        });
    return;
  }
  if (collective_ && table.hosts.size() == static_cast<std::size_t>(spec_.node_count) &&
      table.ports.size() == table.hosts.size()) {
    // The rendezvous waits for every rank: on a thread of its own, so this worker's link to the
    // server keeps its heartbeats meanwhile.
    const double t0 = clock_.now();
    const nn::GlooOptions options{.rank = worker_,
                                  .world = spec_.node_count,
                                  .store_host = table.hosts[0],
                                  .store_port = table.ports[0],
                                  .bind_host = table.hosts[static_cast<std::size_t>(worker_)],
                                  .timeout_s = spec_.io_timeout};
    background(
        [this, options] {
          collective_->group =
              std::make_unique<nn::GlooAllreduce>(options, collective_->store.get());
        },
        [this, t0] {
          say(fmt::format("joined the gloo group of {} in {}", spec_.node_count,
                          fmt_duration(clock_.now() - t0)));
          conn_->send(PeersUp{.links = spec_.node_count - 1});
        });
    return;
  }
  if (!mesh_ || table.hosts.size() != static_cast<std::size_t>(spec_.node_count) ||
      table.ports.size() != table.hosts.size()) {
    give_up("the server sent a peer table this job does not need or of the wrong size", true);
    return;
  }
  std::vector<net::PeerAddress> peers;
  for (std::size_t w = 0; w < table.hosts.size(); ++w)
    peers.push_back({table.hosts[w], table.ports[w]});
  if (table.key.size() != net::kAuthNonceBytes) {
    give_up("the server's PeerTable has no valid peer key", true);
    return;
  }
  mesh_->set_key(table.key);
  if (opts_.shared_memory == "on") {
    // Room for a plain gradient (broadcast); ring chunks are smaller.
    mesh_->set_shared_memory(net::fp32_frame_slot_bytes(job_.num_parameters));
  }
  try {
    mesh_->connect(
        peers,
        [this] {
          say(fmt::format("linked with its {} peers", spec_.node_count - 1));
          conn_->send(PeersUp{.links = spec_.node_count - 1});
        },
        [this](int peer, Message&& m) {
          if (!done_ && role_) deliver(m);
          (void)peer;
        },
        [this](int peer, const std::string& why) { on_peer_error(peer, why); }, spec_.io_timeout);
  } catch (const Error& e) {
    give_up(e.what(), true);
  }
}

void Client::on_peer_error(int peer, const std::string& why) {
  if (done_) return;
  // Once this worker has done its last iteration, peers that finish first close their links.
  if (role_ && role_->iterations_done() >= schedule_.total_iterations()) return;
  const std::string what = peer >= 0 ? fmt::format("lost peer worker {}: {}", peer, why)
                                     : fmt::format("peer links: {}", why);
  if (spec_.allreduce_on_loss == "shrink" && peer >= 0 && conn_ && conn_->is_open()) {
    // The server halts the ring and re-forms it without that peer (RingReform, on_ring_reform):
    // the other links stay up. If no ring without it comes, the server did not lose it (a link
    // between two live workers broke) and this worker cannot go on.
    // A peer the ring has already left behind (a hung one whose link times out later): no news.
    if (ring_members_.count(peer) == 0 && !ring_members_.empty()) return;
    lost_peers_.insert(peer);
    if (!peer_grace_armed_) {
      peer_grace_armed_ = true;
      peer_grace_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(2 * opts_.dead_after)));
      peer_grace_.async_wait([this, what](std::error_code ec) {
        if (!ec) give_up(what + " (the server re-formed no ring without it)", true);
      });
    }
    return;
  }
  // A peer that lost the server closes its links, and this worker may see that before its own
  // server link fails (a killed server): wait for the server's verdict first. A live server sends
  // the job's end at once (it lost that worker too); a dead one fails the server link, and this
  // worker redials it to rejoin the job as any worker that lost its server does.
  if (conn_ && conn_->is_open() && !peer_grace_armed_) {
    peer_grace_armed_ = true;
    if (mesh_) mesh_->close();
    peer_grace_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(opts_.dead_after)));
    peer_grace_.async_wait([this, what](std::error_code ec) {
      if (!ec) give_up(what, true);
    });
    return;
  }
  if (!peer_grace_armed_) give_up(what, true);
}

void Client::on_ring_reform(const RingReform& reform) {
  ring_members_ = std::set<int>(reform.members.begin(), reform.members.end());
  if (!peer_grace_armed_) return;
  for (const int member : reform.members) {
    // A link to a member of the new ring is broken: the grace runs out and this worker gives up.
    if (lost_peers_.count(member) > 0) return;
  }
  lost_peers_.clear();
  peer_grace_armed_ = false;
  peer_grace_.cancel();
  say(fmt::format("the ring re-formed with workers {}", fmt::join(reform.members, ", ")));
}

}  // namespace psgd
