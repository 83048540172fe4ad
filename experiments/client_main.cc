// client: see experiments/client.h, or run `client --help`.
#include <csignal>

#include "core/allocator.h"
#include "experiments/cli.h"
#include "experiments/client/client.h"

int main(int argc, char** argv) {
  psgd::keep_freed_memory();
  // A write to a peer that has gone (Gloo's sockets, unlike Asio's, are written without
  // MSG_NOSIGNAL) fails with EPIPE and is reported, rather than killing the worker silently.
  std::signal(SIGPIPE, SIG_IGN);
  psgd::ClientOptions options;
  if (int rc = psgd::parse_client_args(argc, argv, options); rc != psgd::kContinue) return rc;
  return psgd::run_client(options);
}
