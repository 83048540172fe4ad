#pragma once
// EventQueue: the discrete-event scheduler of the simulated cluster.
//
// Contract. Events are callbacks stamped with a virtual time. step() runs the earliest one; events
// with equal times run in the order they were scheduled (a sequence number breaks ties), so a
// simulation that schedules the same events in the same order replays exactly, whatever the
// heap's internal layout. Time never goes backwards: scheduling before now() is a bug and throws.
//
// Threading: one thread; an event may schedule further events (also at the current time).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/error.h"

namespace psgd::sim {

class EventQueue {
 public:
  using Action = std::function<void()>;

  // Runs `action` at virtual time `time` (>= now()).
  void schedule(double time, Action action) {
    PSGD_CHECK(time >= now_, "event scheduled in the past ({} s < now {} s)", time, now_);
    heap_.push_back(Event{time, next_seq_++, std::move(action)});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }

  // Advances now() to the earliest event and runs it; false when no event is left.
  bool step() {
    if (heap_.empty()) return false;
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Event e = std::move(heap_.back());
    heap_.pop_back();
    now_ = e.time;
    e.action();
    return true;
  }

  double now() const { return now_; }
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  std::uint64_t scheduled() const { return next_seq_; }  // events ever scheduled

 private:
  struct Event {
    double time;
    std::uint64_t seq;
    Action action;
  };
  // std::*_heap keep the "largest" on top; the largest here is the earliest (time, seq).
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };

  std::vector<Event> heap_;
  std::uint64_t next_seq_ = 0;
  double now_ = 0;
};

}  // namespace psgd::sim
