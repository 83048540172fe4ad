#pragma once
// Command-line front ends of init_server and client (CLI11). Flag names are a public contract:
// sweep scripts use them. Every option's help states its meaning and default.
#include <string>
#include <vector>

#include "experiments/job_spec.h"
#include "experiments/sim_options.h"

namespace psgd {

// How this server runs, apart from the job: where it listens, how it authenticates and watches
// its links, what it writes besides the run directory. Keys of --config files as well.
struct ServerFlags {
  // Empty: 127.0.0.1 without a passphrase, 0.0.0.0 with one (--bind overrides; a non-loopback
  // address without a passphrase is warned about).
  std::string bind;
  std::string passphrase_file;  // else $PSGD_PASSPHRASE; else no authentication (network/auth.h)
  // Seconds of idle link before a Heartbeat is sent, and of silence after which a joined worker
  // is lost. Each side beats within the other's dead_after (network/liveness.h).
  double heartbeat_interval = 2;
  double dead_after = 10;
  // Offer workers on this machine a shared-memory channel for large frames
  // (network/tcp/shm_channel.h); off: every frame over TCP.
  std::string shared_memory = "on";
  std::string port_file;     // write the listening port here once bound (for scripts and tests)
  bool timeline = false;     // --timeline: <run>/timeline.json (Chrome trace)
  bool tensorboard = false;  // --tensorboard: <run>/tensorboard/events.out.tfevents.*
  // --resume RUN_DIR: continue that run from its checkpoint.bin; spec is then the job of its
  // config.json (only the flags that do not change the job may be given as well).
  std::string resume;
  // Testing aid: after writing this many checkpoints the server kills itself with SIGKILL (an
  // abrupt crash at a known point, for resume tests). 0: never.
  int crash_after_checkpoints = 0;
  // A JSON object describing the network this run goes over (scripts/run_local.sh --emulate
  // writes one), recorded in config.json as "network". It describes; it changes nothing.
  std::string network_file;
  // --cluster F: the lab's machines (experiments/cluster_file.h); sets node_count, working_ports
  // and passphrase_file, recorded in config.json as "cluster".
  std::string cluster;

  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("bind", self.bind,
          "Address to listen on (0.0.0.0: every interface; default 127.0.0.1 without a "
          "passphrase, 0.0.0.0 with one)");
    visit("passphrase_file", self.passphrase_file,
          "Authenticate workers with the passphrase on this file's first line (- : the first "
          "line of standard input; else $PSGD_PASSPHRASE; never printed or sent)");
    visit("heartbeat_interval", self.heartbeat_interval,
          "Send a heartbeat on a worker's link idle for this many seconds; shortened on that "
          "link (and said in one line) to a third of the worker's own --dead_after when that "
          "is less");
    visit("dead_after", self.dead_after,
          "A worker silent this many seconds is lost, from when it joined (heartbeats go both "
          "ways, so a worker may wait for the others as long as --join_timeout allows); during "
          "training the strategy decides whether the run goes on. Every worker is told it and "
          "sends its heartbeats at least three times within it, whatever its own "
          "--heartbeat_interval. Also how long a SIGTERM'd server waits for the update it "
          "checkpoints. Real links only: --simulate refuses "
          "a value of its own for either");
    visit("shared_memory", self.shared_memory,
          "on: workers on this machine exchange large frames (gradients, parameters) with the "
          "server through shared memory instead of copying them through loopback TCP; results "
          "are identical, only faster. off: TCP only (default on); refused with "
          "--allreduce_backend shm, whose workers sum their gradients in shared memory");
    visit("port_file", self.port_file,
          "Write the port actually listened on to this file (useful with port 0)");
    visit("timeline", self.timeline,
          "Write timeline.json (Chrome trace of per-worker phases and server rounds) to the run "
          "directory; with --simulate its times are virtual");
    visit("tensorboard", self.tensorboard,
          "Write TensorBoard scalars (loss, accuracy, bytes, time split per epoch) under <run "
          "dir>/tensorboard/");
    visit("resume", self.resume,
          "Continue the run in RUN_DIR from its last checkpoint: the job is read from "
          "RUN_DIR/config.json (flags that would change it are refused), workers connect as "
          "usual, and metrics, workers.csv and summary.json continue in RUN_DIR");
    visit("crash_after_checkpoints", self.crash_after_checkpoints,
          "Testing aid: kill this server with SIGKILL right after its N-th checkpoint (0: never)");
    visit("network_file", self.network_file,
          "A JSON object describing the network the workers reach this server over, copied into "
          "config.json as \"network\" (scripts/run_local.sh --emulate writes one: hosts, "
          "addresses, rate caps, latency); it only describes, it changes nothing");
    visit("cluster", self.cluster,
          "A cluster file (JSON: the server's address and port, the worker hosts with slots, "
          "per-host dataset and ssh user, the passphrase file; README \"Running on several "
          "machines\"): the job gets node_count = the hosts' slots, working_ports = the server's "
          "port and the passphrase file unless given; copied into config.json as \"cluster\"");
  }
};

struct ServerOptions : ServerFlags {
  JobSpec spec;
  SimOptions sim;           // --simulate and its flags: run every node in this process (simulate.h)
  std::string config_file;  // --config: JSON with any of the flags as keys; flags given as well win
  // --check: validate the flags (and --config) as a run would, print the effective job as JSON
  // ({"job": {...}, "simulate": bool}) on stdout and exit 0, without loading data or listening.
  bool check = false;
  // Rewrites canonicalize() made (Parallel-SGD's spellings), for the log and config.json.
  std::vector<std::string> notes;
  nlohmann::json network;       // --network_file's object (null without it), for config.json
  nlohmann::json cluster_json;  // --cluster's object (null without it), for config.json
  std::string command_line;
};

struct ClientOptions {
  std::string ip = "127.0.0.1";
  int port = 55555;
  int threads = 0;              // 0: what the server suggests (cores / processes on this host)
  std::string dataset;          // override the job's dataset location on this machine
  double connect_timeout = 30;  // seconds to keep retrying the connection
  // Times a worker that lost its server during a job redials it and rejoins that job.
  int reconnects = 3;
  double slowdown = 1;            // stretch this worker's compute time F-fold (straggler studies)
  std::string passphrase_file;    // else $PSGD_PASSPHRASE; else no authentication
  double heartbeat_interval = 2;  // at most a third of the server's --dead_after, on its link
  double dead_after = 10;  // seconds of silence from the server, once training, before giving up
  std::string shared_memory = "on";  // take up the server's shared-memory offer (same machine only)
  // A resident worker (--serve): after each job it waits for the next one from a server at
  // ip:port, for serve_timeout seconds between jobs (0: until SIGTERM or SIGINT).
  bool serve = false;
  double serve_timeout = 0;
  std::string command_line;
};

// Parse argv. Returns kContinue to go on, or the code to exit with at once (help printed: 0; bad
// flags: 2, after one clear line on stderr).
inline constexpr int kContinue = -1;
int parse_server_args(int argc, char** argv, ServerOptions& out);
int parse_client_args(int argc, char** argv, ClientOptions& out);

std::string join_command_line(int argc, char** argv);

}  // namespace psgd
