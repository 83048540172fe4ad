// client: see experiments/client.h, or run `client --help`.
#include "core/allocator.h"
#include "experiments/cli.h"
#include "experiments/client/client.h"

int main(int argc, char** argv) {
  psgd::keep_freed_memory();
  psgd::ClientOptions options;
  if (int rc = psgd::parse_client_args(argc, argv, options); rc != psgd::kContinue) return rc;
  return psgd::run_client(options);
}
