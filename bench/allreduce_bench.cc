// allreduce_bench: our ring allreduce (psgd/tcp_ring.h), or with --ours shm our one-machine
// shared-memory allreduce (network/shm_allreduce.h, --allreduce_backend shm), against Gloo's (c10d
// ProcessGroupGloo), same ranks, same buffers, same machine, in one run, so the figure is a ratio.
// (Over 400 lines: a benchmark driver with its backends, its rank processes and its checks in one
// file.)
//
//   build/bench/allreduce_bench [--sizes_mb 1,100] [--worlds 2,4] [--seconds 2] [--chunk_kb auto]
//                               [--repeats 1] [--backends ours,gloo] [--threads_as_ranks]
//                               [--ours ring|shm] [--transport shm|tcp] [--shm_slots 16]
//
// Each rank is a process of its own (this binary started again in a hidden worker mode), as in a
// real job; --threads_as_ranks runs the ranks as threads of this process instead. For each size
// and world: one warm-up allreduce whose result every rank checks element by element, then as
// many as fit in --seconds (at least 3), started together; time per allreduce is the slowest
// rank's. With --repeats, ours and Gloo are measured alternately that many times and the medians
// are shown. Algorithm bandwidth = buffer bytes / time per allreduce (NCCL's "algbw"; a ring moves
// 2(n-1)/n of that per rank). Our ring's chunks travel as the client's peer links carry them by
// default (--shared_memory on): through shared-memory slots, the socket carrying only a notice;
// --transport tcp sends them through loopback TCP as Gloo does.
//
// Worker protocol (process mode), one line per step, JSON from the worker on its stdout, plain
// text from the driver on its stdin; every wait on either side has a timeout:
//   worker: {"port":P}           ours: its ring listener (--ours shm: 0); gloo: rank 0's TCPStore
//                                (others 0)
//   driver: "P0 P1 ... Pn-1"     every rank's port
//   worker: {"ready":true}       linked, warm-up allreduce done and its result checked
//   driver: "go"
//   worker: {"seconds":s,"cpu_seconds":c}   per timed loop: wall time and this process's CPU time
//   worker: {"error":"..."}      instead of any of the above; the driver then kills every rank
// A worker dies with the driver (PR_SET_PDEATHSIG) and exits when its stdin closes.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "network/shm_allreduce.h"
#include "nn/gloo_allreduce.h"
#include "psgd/tcp_ring.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::vector<double> sizes_mb{1, 100};
  std::vector<int> worlds{2, 4};
  double seconds = 2;
  int chunk_kb = 0;               // 0: 1024 with shared memory, 256 over TCP
  std::string ours = "ring";      // which of ours: the ring, or the shm backend's segment
  std::string transport = "shm";  // our ring's links: shared memory (as the client's) or TCP
  int shm_slots = 16;
  std::vector<std::string> backends{"ours", "gloo"};
  int repeats = 1;
  bool threads_as_ranks = false;
  double timeout_s = 60;
};

// The hidden worker mode's arguments (set by the driver, not by people).
struct WorkerArgs {
  std::string backend;  // "ours" or "gloo"
  int rank = 0;
  int world = 0;
  std::size_t floats = 0;
  int iters = 1;
  int parent = 0;        // the driver's pid
  std::string shm_name;  // --ours shm: the segment of this measurement
};

// A segment name of its own for each measurement.
std::string fresh_segment_name() {
  static int count = 0;
  const std::string seed =
      fmt::format("{}-{}-{}", ::getpid(), ++count, Clock::now().time_since_epoch().count());
  return psgd::net::shm_allreduce_name(
      std::span(reinterpret_cast<const std::uint8_t*>(seed.data()), seed.size()));
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// The 1-minute load average before the run, to say how busy the machine was (figures under load
// move a lot; during the run it counts this benchmark's own ranks too).
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "?" : one;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Rank r's input: r + 1 + (i mod 7), small integers, so every sum is exact in fp32 whatever the
// order of additions, and a chunk reduced into the wrong place shows.
void fill(std::vector<float>& data, int rank) {
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<float>(rank + 1 + static_cast<int>(i % 7));
}

// Empty if `data` is the element-wise sum of fill() over `world` ranks; else the first mismatch.
std::string check(const std::vector<float>& data, int world) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    const float want =
        static_cast<float>(world * (world + 1) / 2 + world * static_cast<int>(i % 7));
    if (data[i] != want)
      return fmt::format("wrong allreduce result: element {} of {} is {}, the sum is {}", i,
                         data.size(), data[i], want);
  }
  return {};
}

struct Timing {
  double seconds = 0;      // per allreduce, slowest rank
  double cpu_seconds = 0;  // CPU time per allreduce of all ranks (all their threads)
};

// ---------------------------------------------------------------------------------------------
// Ranks as threads of this process (--threads_as_ranks).

// Runs `make(rank)` then `iters` calls of `collective->allreduce_sum` on every rank (threads);
// returns seconds per allreduce (slowest rank) and CPU seconds per allreduce of the process.
Timing time_allreduce_threads(int world, std::size_t floats, int iters,
                              const std::function<std::unique_ptr<psgd::Collective>(int)>& make) {
  std::vector<double> took(static_cast<std::size_t>(world), 0);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<double> cpu;
  std::barrier sync(world, [&]() noexcept { cpu.push_back(process_cpu_seconds()); });
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto c = make(r);
        std::vector<float> data(floats);
        fill(data, r);
        c->allreduce_sum(data);  // warm-up (and the first connection setup of lazy engines)
        if (std::string e = check(data, world); !e.empty()) throw psgd::Error(e);
        sync.arrive_and_wait();
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i)
          c->allreduce_sum(data);
        took[static_cast<std::size_t>(r)] = seconds_since(t0) / iters;
        sync.arrive_and_wait();
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = fmt::format("rank {}: {}", r, e.what());
        sync.arrive_and_drop();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw psgd::Error(e);
  return {*std::max_element(took.begin(), took.end()), (cpu.at(1) - cpu.at(0)) / iters};
}

std::unique_ptr<psgd::Collective> borrow(psgd::TcpRing* ring) {
  struct Borrowed final : psgd::Collective {
    psgd::TcpRing* ring;
    void allreduce_sum(std::span<float> d) override { ring->allreduce_sum(d); }
    std::string name() const override { return "ring"; }
  };
  auto b = std::make_unique<Borrowed>();
  b->ring = ring;
  return b;
}

psgd::TcpRingOptions ring_options(const Options& o) {
  const std::size_t chunk_floats = static_cast<std::size_t>(o.chunk_kb) * 1024 / sizeof(float);
  return {.ring = {.chunk_elements = chunk_floats},
          .timeout_s = o.timeout_s,
          .shm_slots = o.transport == "shm" ? static_cast<std::uint32_t>(o.shm_slots) : 0u};
}

Timing run_threads(const std::string& backend, int world, std::size_t floats, int iters,
                   const Options& o) {
  if (backend == "ours" && o.ours == "shm") {
    const std::string name = fresh_segment_name();
    return time_allreduce_threads(world, floats, iters, [&](int r) {
      return std::unique_ptr<psgd::Collective>(
          psgd::net::ShmAllreduce::join(name, r, world, floats, o.timeout_s));
    });
  }
  if (backend == "ours") {
    std::vector<std::unique_ptr<psgd::TcpRing>> rings;
    std::vector<psgd::net::PeerAddress> addresses;
    for (int r = 0; r < world; ++r) {
      rings.push_back(std::make_unique<psgd::TcpRing>(r, world, ring_options(o)));
      addresses.push_back({"127.0.0.1", rings.back()->listen()});
    }
    return time_allreduce_threads(world, floats, iters, [&](int r) {
      rings[static_cast<std::size_t>(r)]->connect(addresses);
      return borrow(rings[static_cast<std::size_t>(r)].get());
    });
  }
  psgd::nn::GlooStoreHost host(world, 0, o.timeout_s);
  return time_allreduce_threads(world, floats, iters, [&](int r) {
    return std::make_unique<psgd::nn::GlooAllreduce>(
        psgd::nn::GlooOptions{
            .rank = r, .world = world, .store_port = host.port(), .timeout_s = o.timeout_s},
        r == 0 ? &host : nullptr);
  });
}

// ---------------------------------------------------------------------------------------------
// Ranks as processes (the default): the worker side.

void emit(const json& line) {
  const std::string s = line.dump() + "\n";
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw psgd::IoError("worker: cannot write to the driver");
    done += static_cast<std::size_t>(n);
  }
}

// The driver's next line on stdin; throws if it closes stdin or says nothing within timeout_s.
std::string read_command(const char* what, double timeout_s) {
  static std::string buffer;
  const auto deadline = after(timeout_s);
  for (;;) {
    if (auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      throw psgd::IoError(
          fmt::format("worker: no {} from the driver within {} s", what, timeout_s));
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw psgd::IoError(fmt::format("worker: the driver closed stdin before {}", what));
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

int worker_main(const WorkerArgs& a, const Options& o) {
  // Never outlive the driver: killed when it dies, and a driver already gone is noticed here.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != a.parent) return 1;
  // The allocator setting init_server and client run with (core/allocator.h), for both backends:
  // without it every 25 MB chunk body is a fresh mmap and page-faults in.
  psgd::keep_freed_memory();
  try {
    std::unique_ptr<psgd::TcpRing> ring;
    std::unique_ptr<psgd::nn::GlooStoreHost> host;
    int port = 0;
    if (a.backend == "ours" && o.ours == "shm") {
      port = 0;  // the segment's name came with the arguments
    } else if (a.backend == "ours") {
      ring = std::make_unique<psgd::TcpRing>(a.rank, a.world, ring_options(o));
      port = ring->listen("127.0.0.1");
    } else if (a.rank == 0) {
      host = std::make_unique<psgd::nn::GlooStoreHost>(a.world, 0, o.timeout_s);
      port = host->port();
    }
    emit({{"port", port}});

    std::istringstream table(read_command("port table", o.timeout_s));
    std::vector<int> ports;
    for (int p; table >> p;)
      ports.push_back(p);
    if (static_cast<int>(ports.size()) != a.world)
      throw psgd::ProtocolError(
          fmt::format("worker: {} ports for {} ranks", ports.size(), a.world));

    std::unique_ptr<psgd::Collective> collective;
    if (a.backend == "ours" && o.ours == "shm") {
      collective =
          psgd::net::ShmAllreduce::join(a.shm_name, a.rank, a.world, a.floats, o.timeout_s);
    } else if (ring) {
      std::vector<psgd::net::PeerAddress> addresses;
      for (int p : ports)
        addresses.push_back({"127.0.0.1", p});
      ring->connect(addresses);
      collective = borrow(ring.get());
    } else {
      collective = std::make_unique<psgd::nn::GlooAllreduce>(
          psgd::nn::GlooOptions{
              .rank = a.rank, .world = a.world, .store_port = ports[0], .timeout_s = o.timeout_s},
          host.get());
    }
    std::vector<float> data(a.floats);
    fill(data, a.rank);
    collective->allreduce_sum(data);  // warm-up (and the first connection setup of lazy engines)
    if (std::string e = check(data, a.world); !e.empty()) throw psgd::Error(e);
    emit({{"ready", true}});

    if (std::string go = read_command("go", o.timeout_s); go != "go")
      throw psgd::ProtocolError(fmt::format("worker: expected go, got '{}'", go));
    const double cpu0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    for (int i = 0; i < a.iters; ++i)
      collective->allreduce_sum(data);
    const double took = seconds_since(t0);
    emit({{"seconds", took}, {"cpu_seconds", process_cpu_seconds() - cpu0}});
    return 0;
  } catch (const std::exception& e) {
    try {
      emit({{"error", e.what()}});
    } catch (const std::exception&) {
    }
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Ranks as processes: the driver side.

// One measurement's worker processes, spawned from this binary with stdin and stdout on pipes;
// stderr is this process's. The destructor kills and reaps whatever still runs.
class Workers {
 public:
  explicit Workers(const std::vector<std::vector<std::string>>& argvs) {
    try {
      start(argvs);
    } catch (...) {
      stop();
      throw;
    }
  }
  ~Workers() { stop(); }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

 private:
  void start(const std::vector<std::vector<std::string>>& argvs) {
    static const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    for (std::size_t r = 0; r < argvs.size(); ++r) {
      int to[2], from[2];  // its stdin, its stdout
      if (::pipe2(to, O_CLOEXEC) != 0) throw psgd::IoError("pipe: " + std::string(strerror(errno)));
      if (::pipe2(from, O_CLOEXEC) != 0) {
        ::close(to[0]);
        ::close(to[1]);
        throw psgd::IoError("pipe: " + std::string(strerror(errno)));
      }
      std::vector<std::string> all{self};
      all.insert(all.end(), argvs[r].begin(), argvs[r].end());
      std::vector<char*> argv;
      for (auto& s : all)
        argv.push_back(s.data());
      argv.push_back(nullptr);
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_adddup2(&fa, to[0], STDIN_FILENO);
      posix_spawn_file_actions_adddup2(&fa, from[1], STDOUT_FILENO);
      Child c;
      const int rc = posix_spawn(&c.pid, self.c_str(), &fa, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&fa);
      ::close(to[0]);
      ::close(from[1]);
      c.in = to[1];
      c.out = from[0];
      if (rc != 0) {
        c.pid = -1;
        children_.push_back(std::move(c));
        throw psgd::IoError(fmt::format("cannot start rank {}: {}", r, strerror(rc)));
      }
      children_.push_back(std::move(c));
    }
  }

  void stop() {
    for (auto& c : children_) {
      if (c.pid > 0) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
        c.pid = -1;
      }
      if (c.in >= 0) ::close(c.in);
      if (c.out >= 0) ::close(c.out);
      c.in = c.out = -1;
    }
  }

 public:
  // One JSON line from every rank, waiting at most until `deadline`. Throws on the first rank that
  // reports an error, exits or stays silent (its message names the rank and the step).
  std::vector<json> collect(const char* what, Clock::time_point deadline) {
    std::vector<json> lines(children_.size());
    std::vector<bool> have(children_.size(), false);
    std::size_t missing = children_.size();
    while (missing > 0) {
      for (std::size_t r = 0; r < children_.size(); ++r) {
        if (have[r]) continue;
        auto& c = children_[r];
        for (auto nl = c.buffer.find('\n'); nl != std::string::npos && !have[r];
             nl = c.buffer.find('\n')) {
          std::string line = c.buffer.substr(0, nl);
          c.buffer.erase(0, nl + 1);
          json j = json::parse(line, nullptr, false);
          if (j.is_discarded() || !j.is_object()) {  // not ours: a library printed to stdout
            fmt::print(stderr, "rank {}: {}\n", r, line);
            continue;
          }
          if (j.contains("error"))
            throw psgd::Error(fmt::format("rank {}: {}", r, j["error"].get<std::string>()));
          lines[r] = std::move(j);
          have[r] = true;
          --missing;
        }
      }
      if (missing == 0) break;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        for (std::size_t r = 0; r < children_.size(); ++r)
          if (!have[r])
            throw psgd::IoError(fmt::format("rank {}: no {} in time (killed)", r, what));
      }
      std::vector<pollfd> fds;
      std::vector<std::size_t> ranks;
      for (std::size_t r = 0; r < children_.size(); ++r)
        if (!have[r]) {
          fds.push_back({children_[r].out, POLLIN, 0});
          ranks.push_back(r);
        }
      if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) continue;
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents == 0) continue;
        auto& c = children_[ranks[k]];
        char chunk[4096];
        const ssize_t n = ::read(c.out, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 && c.buffer.find('\n') == std::string::npos)
          throw psgd::IoError(
              fmt::format("rank {} exited before its {} ({})", ranks[k], what, reap(c)));
        if (n > 0) c.buffer.append(chunk, static_cast<std::size_t>(n));
      }
    }
    return lines;
  }

  void send_all(const std::string& line) {
    const std::string s = line + "\n";
    for (std::size_t r = 0; r < children_.size(); ++r) {
      // A pipe of 64 KB takes these few bytes at once; a closed one fails (SIGPIPE is ignored).
      if (::write(children_[r].in, s.data(), s.size()) != static_cast<ssize_t>(s.size()))
        throw psgd::IoError(fmt::format("rank {}: cannot send '{}': {}", r, line, strerror(errno)));
    }
  }

  // Waits for every rank to exit with status 0 by `deadline`; throws (and so kills) otherwise.
  void wait_all(Clock::time_point deadline) {
    for (std::size_t r = 0; r < children_.size(); ++r) {
      auto& c = children_[r];
      ::close(c.in);  // a worker still reading stdin now sees its end
      c.in = -1;
      for (;;) {
        int status = 0;
        const pid_t got = ::waitpid(c.pid, &status, WNOHANG);
        if (got == c.pid) {
          c.pid = -1;
          if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            throw psgd::IoError(fmt::format("rank {} failed at exit ({})", r, describe(status)));
          break;
        }
        if (Clock::now() > deadline)
          throw psgd::IoError(fmt::format("rank {} did not exit in time (killed)", r));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }

 private:
  struct Child {
    pid_t pid = -1;
    int in = -1;   // its stdin
    int out = -1;  // its stdout
    std::string buffer;
  };

  static std::string describe(int status) {
    if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {}", strsignal(WTERMSIG(status)));
    return "stopped";
  }
  // How a child whose stdout closed ended (waits up to a second for it to go).
  static std::string reap(Child& c) {
    for (int k = 0; k < 500 && c.pid > 0; ++k) {
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
        c.pid = -1;
        return describe(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return "closed its stdout";
  }

  std::vector<Child> children_;
};

Timing run_processes(const std::string& backend, int world, std::size_t floats, int iters,
                     const Options& o) {
  std::vector<std::vector<std::string>> argvs;
  const std::string segment = fresh_segment_name();
  for (int r = 0; r < world; ++r)
    argvs.push_back({"--worker",    backend,
                     "--rank",      std::to_string(r),
                     "--world",     std::to_string(world),
                     "--floats",    std::to_string(floats),
                     "--iters",     std::to_string(iters),
                     "--chunk_kb",  std::to_string(o.chunk_kb),
                     "--transport", o.transport,
                     "--shm_slots", std::to_string(o.shm_slots),
                     "--timeout_s", fmt::format("{}", o.timeout_s),
                     "--ours",      o.ours,
                     "--shm_name",  segment,
                     "--parent",    std::to_string(::getpid())});
  Workers workers(argvs);
  std::string table;
  for (const json& j : workers.collect("port", after(o.timeout_s)))
    table += fmt::format("{} ", j.at("port").get<int>());
  workers.send_all(table);
  workers.collect("warm-up allreduce", after(o.timeout_s));
  workers.send_all("go");
  // The loop was sized to take about --seconds; a loaded machine may stretch it several times.
  const auto results = workers.collect("timed allreduces", after(o.timeout_s + 10 * o.seconds));
  workers.wait_all(after(o.timeout_s));
  Timing t;
  for (const json& j : results) {
    t.seconds = std::max(t.seconds, j.at("seconds").get<double>() / iters);
    t.cpu_seconds += j.at("cpu_seconds").get<double>() / iters;
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  WorkerArgs w;
  CLI::App app{"Ring allreduce (ours) against Gloo on loopback"};
  app.add_option("--sizes_mb", o.sizes_mb, "Buffer sizes in MB (10^6 bytes) of fp32")
      ->delimiter(',');
  app.add_option("--worlds", o.worlds, "Ranks")->delimiter(',');
  app.add_option("--seconds", o.seconds, "Time budget per measurement");
  app.add_option("--chunk_kb", o.chunk_kb,
                 "Our ring's chunk size in KB (default: 1024 with --transport shm, where a chunk "
                 "is one slot and fewer, larger chunks mean fewer notices; 256 over TCP)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ours", o.ours,
                 "Which of psgd's allreduces is 'ours': ring (psgd/tcp_ring.h, the default "
                 "backend) or shm (--allreduce_backend shm: one shared-memory segment, the last "
                 "rank to arrive sums; network/shm_allreduce.h)")
      ->check(CLI::IsMember({"ring", "shm"}));
  app.add_option("--transport", o.transport,
                 "How our ring's chunks travel between ranks: shm (shared-memory slots, the "
                 "socket carrying a notice; what the client's peer links use by default) or tcp "
                 "(loopback TCP only, like Gloo)")
      ->check(CLI::IsMember({"shm", "tcp"}));
  app.add_option("--shm_slots", o.shm_slots, "With --transport shm: slots per link and direction")
      ->check(CLI::Range(1, 16));
  app.add_option("--repeats", o.repeats,
                 "Measurements per backend, interleaved; the table shows the medians")
      ->check(CLI::PositiveNumber);
  app.add_option("--backends", o.backends,
                 "Which to time: ours, gloo or both (the ratio needs both)")
      ->delimiter(',')
      ->check(CLI::IsMember({"ours", "gloo"}));
  app.add_flag("--threads_as_ranks", o.threads_as_ranks,
               "Run the ranks as threads of this process (default: one process per rank, "
               "started from this binary, as in a real job)");
  app.add_option("--timeout_s", o.timeout_s,
                 "Longest wait for any step of a rank (start, link-up, a silent peer); a rank "
                 "that exceeds it fails the run and every rank is killed")
      ->check(CLI::PositiveNumber);
  // The worker mode the driver starts; hidden (empty group).
  app.add_option("--worker", w.backend)->group("")->check(CLI::IsMember({"ours", "gloo"}));
  app.add_option("--rank", w.rank)->group("");
  app.add_option("--world", w.world)->group("");
  app.add_option("--floats", w.floats)->group("");
  app.add_option("--iters", w.iters)->group("");
  app.add_option("--parent", w.parent)->group("");
  app.add_option("--shm_name", w.shm_name)->group("");
  CLI11_PARSE(app, argc, argv);

  if (o.chunk_kb == 0) o.chunk_kb = o.transport == "shm" ? 1024 : 256;
  if (!w.backend.empty()) return worker_main(w, o);
  ::signal(SIGPIPE, SIG_IGN);  // a worker that died makes writes to it fail, not this process

  try {
    fmt::print("# ranks are {}; loopback; ours is {}; load average {}\n",
               o.threads_as_ranks ? "threads of one process" : "processes (one per rank)",
               o.ours == "shm" ? std::string("the shm backend (one segment, the last rank sums)")
               : o.transport == "shm"
                   ? fmt::format("the ring over shared memory ({} slots of {} KB per link "
                                 "and direction)",
                                 o.shm_slots, o.chunk_kb)
                   : std::string("the ring over TCP"),
               load_average());
    fmt::print("{:>6} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}\n", "ranks", "MB",
               "ours ms", "gloo ms", "ours GB/s", "gloo GB/s", "ours cpu", "gloo cpu", "ours/gloo");
    std::fflush(stdout);
    for (int world : o.worlds) {
      for (double mb : o.sizes_mb) {
        const auto floats = static_cast<std::size_t>(mb * 1e6 / sizeof(float));
        auto run = [&](const std::string& backend, int iters) {
          return o.threads_as_ranks ? run_threads(backend, world, floats, iters, o)
                                    : run_processes(backend, world, floats, iters, o);
        };
        auto iters_for = [&](const std::string& backend) {
          const double once = run(backend, 1).seconds;
          return std::max(3, static_cast<int>(o.seconds / std::max(once, 1e-6)));
        };
        auto wanted = [&](const char* b) {
          return std::find(o.backends.begin(), o.backends.end(), b) != o.backends.end();
        };
        const int ours_iters = wanted("ours") ? iters_for("ours") : 0;
        const int gloo_iters = wanted("gloo") ? iters_for("gloo") : 0;
        // Interleaved repeats, median of each: load from other processes hits both sides alike.
        std::vector<double> ours_s, gloo_s, ours_cpu, gloo_cpu;
        for (int k = 0; k < o.repeats; ++k) {
          if (ours_iters) {
            const Timing t = run("ours", ours_iters);
            ours_s.push_back(t.seconds);
            ours_cpu.push_back(t.cpu_seconds);
          }
          if (gloo_iters) {
            const Timing t = run("gloo", gloo_iters);
            gloo_s.push_back(t.seconds);
            gloo_cpu.push_back(t.cpu_seconds);
          }
        }
        const double bytes = static_cast<double>(floats * sizeof(float));
        const double os = median(ours_s), gs = median(gloo_s);
        fmt::print(
            "{:>6} {:>9.0f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>9.2f}\n",
            world, mb, 1e3 * os, 1e3 * gs, bytes / os / 1e9, bytes / gs / 1e9,
            1e3 * median(ours_cpu), 1e3 * median(gloo_cpu), gs / os);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "allreduce_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
