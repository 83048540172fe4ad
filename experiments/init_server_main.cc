// init_server: see experiments/server.h (TCP) and experiments/simulate.h (--simulate), or run
// `init_server --help`.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include "core/allocator.h"

#include <csignal>
#include <cstdio>

#include "core/error.h"
#include "core/fields_json.h"
#include "experiments/cli.h"
#include "experiments/server/server.h"
#include "experiments/simulate.h"
#include "network/auth.h"

int main(int argc, char** argv) {
  psgd::keep_freed_memory();
  psgd::ServerOptions options;
  if (int rc = psgd::parse_server_args(argc, argv, options); rc != psgd::kContinue) return rc;
  if (options.check) {
    // The passphrase, as a run reads it (an unreadable or empty file, an empty $PSGD_PASSPHRASE
    // refuse the run, so they refuse the check); not from standard input, which only a run reads.
    if (options.passphrase_file != "-") {
      try {
        (void)psgd::net::load_key(options.passphrase_file);
      } catch (const psgd::ConfigError& e) {
        std::fprintf(stderr, "init_server: %s\n", e.what());
        return 2;
      }
    }
    nlohmann::json server, simulation;
    psgd::fields_to_json(static_cast<const psgd::ServerFlags&>(options), server);
    psgd::fields_to_json(options.sim, simulation);
    nlohmann::json out{{"job", options.spec},
                       {"server", server},
                       {"simulate", options.sim.enabled},
                       {"simulation", simulation}};
    if (!options.notes.empty()) out["canonicalized"] = options.notes;
    if (!options.cluster_json.is_null()) out["cluster"] = options.cluster_json;
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  // A write beyond a file size limit (ulimit -f) fails with EFBIG and ends the run with "failed:
  // cannot write ..." (core/files.h), instead of SIGXFSZ killing the process with nothing said.
  std::signal(SIGXFSZ, SIG_IGN);
  // A write to a closed socket or pipe fails with EPIPE and is reported, not a silent SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  // Warnings (refused connections and the like) go to stderr, prefixed like every other line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("init_server"));
  spdlog::set_pattern("%n: %l: %v");
  if (options.sim.enabled) return psgd::run_simulation(options);
  return psgd::run_server(options);
}
