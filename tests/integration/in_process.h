#pragma once
// init_server and its clients as threads of the test process (run_tcp), and init_server
// --simulate in-process (run_sim), from the same flags: the drivers as parts a test can run
// without processes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "experiments/cli.h"
#include "experiments/client/client.h"
#include "experiments/server/server.h"
#include "experiments/simulate.h"
#include "tests/integration/process.h"

namespace psgd::testing {

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return nlohmann::json::parse(in);
}

inline ServerOptions parse(std::vector<std::string> args) {
  args.insert(args.begin(), "init_server");
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  ServerOptions options;
  const int rc = parse_server_args(static_cast<int>(argv.size()), argv.data(), options);
  // A job that does not parse must not run (it would run the defaults in the working directory).
  if (rc != kContinue) throw std::runtime_error("init_server refused the test's flags");
  return options;
}

// init_server and its clients as threads of this process, over loopback TCP; each client is
// expected to exit with `client_code` (1: the job ended without completing).
inline int run_tcp(std::vector<std::string> flags, const TempDir& dir, int nodes,
                   int client_code = 0) {
  const std::string port_file = dir.file("port");
  std::filesystem::remove(port_file);
  flags.insert(flags.end(),
               {"--working_ports", "0", "--port_file", port_file, "--output", dir.file("tcp")});
  const ServerOptions options = parse(flags);
  int server_code = -1;
  std::thread server([&] { server_code = run_server(options); });
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) {
      port = 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::vector<int> codes(static_cast<std::size_t>(nodes), -1);
  std::vector<std::thread> clients;
  if (port > 0) {
    for (int w = 0; w < nodes; ++w) {
      clients.emplace_back([&, w] {
        codes[static_cast<std::size_t>(w)] =
            run_client(ClientOptions{.port = port, .threads = 1, .connect_timeout = 30});
      });
    }
  }
  for (auto& c : clients)
    c.join();
  server.join();
  EXPECT_GT(port, 0) << "the server did not start listening";
  for (int code : codes)
    EXPECT_EQ(code, client_code);
  return server_code;
}

inline int run_sim(std::vector<std::string> flags, const TempDir& dir) {
  flags.insert(flags.end(), {"--working_ports", "0", "--output", dir.file("sim"), "--simulate",
                             "--sim_compute", "fixed:0.002"});
  return run_simulation(parse(flags));
}

}  // namespace psgd::testing
