#pragma once
// A server and its clients on loopback for integration tests.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/process.h"

namespace psgd::testing {

using namespace std::chrono_literals;

inline bool have_fashion_mnist() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

// A run directory's summary.json.
inline nlohmann::json summary_in(const std::string& run) {
  return nlohmann::json::parse(read_file(run + "/summary.json"));
}

// The epoch of each of a run directory's metrics.csv rows, in order.
inline std::vector<int> metrics_epochs(const std::string& run) {
  std::istringstream in(read_file(run + "/metrics.csv"));
  std::string line;
  std::getline(in, line);  // header
  std::vector<int> epochs;
  while (std::getline(in, line))
    epochs.push_back(std::stoi(line.substr(0, line.find(','))));
  return epochs;
}

// Waits (at most `timeout`) until `what` appears in the process's stdout or stderr; false when it
// does not, or the process ends first.
inline bool wait_for_output(Process& p, const std::string& what,
                            std::chrono::seconds timeout = 60s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (p.out().find(what) != std::string::npos || p.err().find(what) != std::string::npos) {
      return true;
    }
    if (!p.running()) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Waits until the server has written its port file; returns the port or 0.
inline int wait_for_port(const std::string& port_file, Process& server) {
  for (int i = 0; i < 600; ++i) {
    const std::string s = read_file(port_file);
    if (!s.empty() && s.back() == '\n') return std::stoi(s);
    if (!server.running()) return 0;  // exited early
    std::this_thread::sleep_for(50ms);
  }
  return 0;
}

struct Cluster {
  TempDir dir;
  std::unique_ptr<Process> server;
  std::vector<std::unique_ptr<Process>> clients;
  int port = 0;
  // Each client's --connect_timeout, which is also how long it redials a server that went away.
  // Tests that restart the server give it more: a resumed server under ASan on a loaded 2-core
  // machine has taken over 10 s to load its data and checkpoint and listen again.
  std::string client_connect_timeout = "10";

  // Starts init_server with `extra` flags and `nodes` clients (the first `start_clients` of them
  // when given; add_client() starts the others); client i also gets client_extra[i] when given.
  void start(int nodes, std::vector<std::string> extra,
             std::vector<std::vector<std::string>> client_extra = {}, int start_clients = -1) {
    client_extra_ = client_extra;
    std::vector<std::string> args{"--node_count",    std::to_string(nodes),
                                  "--working_ports", "0",
                                  "--port_file",     dir.file("port"),
                                  "--output",        dir.file("run"),
                                  "--bind",          "127.0.0.1",
                                  "--join_timeout",  "60",
                                  "--io_timeout",    "30"};
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<Process>(PSGD_INIT_SERVER, args, dir.file("server.out"),
                                       dir.file("server.err"));
    port = wait_for_port(dir.file("port"), *server);
    ASSERT_GT(port, 0) << server->out() << server->err();
    for (int i = 0; i < (start_clients < 0 ? nodes : start_clients); ++i)
      add_client();
  }

  // Starts the next client.
  void add_client() {
    const std::size_t i = clients.size();
    std::vector<std::string> args{"--ip",
                                  "127.0.0.1",
                                  "--port",
                                  std::to_string(port),
                                  "--connect_timeout",
                                  client_connect_timeout};
    if (i < client_extra_.size()) {
      args.insert(args.end(), client_extra_[i].begin(), client_extra_[i].end());
    }
    clients.push_back(std::make_unique<Process>(PSGD_CLIENT, args,
                                                dir.file("client" + std::to_string(i) + ".out"),
                                                dir.file("client" + std::to_string(i) + ".err")));
  }

  // After the server crashed (its run directory holds a checkpoint): `init_server --resume` on the
  // same port, which the clients, still redialling, join again; both it and every client must end
  // with 0. The resumed server's output goes to resumed.out/.err.
  void resume_with_the_same_clients() {
    Process resumed(PSGD_INIT_SERVER,
                    {"--resume", dir.file("run"), "--working_ports", std::to_string(port), "--bind",
                     "127.0.0.1", "--join_timeout", "60"},
                    dir.file("resumed.out"), dir.file("resumed.err"));
    const auto code = resumed.wait(120s);
    ASSERT_TRUE(code.has_value()) << "resumed server hung\n"
                                  << resumed.out() << resumed.err() << logs();
    ASSERT_EQ(*code, 0) << resumed.out() << resumed.err() << logs();
    for (auto& c : clients) {
      const auto client_code = c->wait(30s);
      ASSERT_TRUE(client_code.has_value()) << logs();
      EXPECT_EQ(*client_code, 0) << logs();
    }
  }

  // init_server --resume of this cluster's run on a free port (written to the file port2), for
  // new clients to join; its output in resumed.out and resumed.err.
  std::unique_ptr<Process> start_resumed() {
    return std::make_unique<Process>(
        PSGD_INIT_SERVER,
        std::vector<std::string>{"--resume", dir.file("run"), "--working_ports", "0", "--port_file",
                                 dir.file("port2"), "--bind", "127.0.0.1", "--join_timeout", "60"},
        dir.file("resumed.out"), dir.file("resumed.err"));
  }

  std::vector<std::vector<std::string>> client_extra_;

  std::string logs() const {
    std::string s = "--- server\n" + server->out() + server->err();
    for (std::size_t i = 0; i < clients.size(); ++i) {
      s += "--- client " + std::to_string(i) + "\n" + clients[i]->out() + clients[i]->err();
    }
    return s;
  }
};

// The run's summary.json.
inline nlohmann::json summary_of(const Cluster& cluster) {
  return summary_in(cluster.dir.file("run"));
}

}  // namespace psgd::testing
