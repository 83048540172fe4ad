// libFuzzer: the server's side of results coming home (experiments/worker_results.h). The input is
// a sequence of (worker byte, WorkerLog body) pieces from hostile workers, decoded and handed to
// the collector as init_server does. Nothing may crash, and what is kept stays within the limits:
// whole, well-formed trace rows only, a bounded log, nothing after a worker's last piece.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "experiments/worker_results.h"
#include "fuzz/input_reader.h"
#include "network/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  psgd::fuzz::InputReader in(data, size);
  psgd::WorkerResults results(3);
  while (!in.done()) {
    const int worker = static_cast<int>(in.byte()) % 5 - 1;  // -1 .. 3: two ids that do not exist
    try {
      const auto m = psgd::decode_body(psgd::MessageType::kWorkerLog, in.piece());
      const bool was_complete = results.complete(worker);
      const std::int64_t rows_before = worker >= 0 && worker < 3 ? results.rows(worker) : 0;
      results.add(worker, std::get<psgd::WorkerLog>(m));
      if (was_complete && results.rows(worker) != rows_before) std::abort();
    } catch (const psgd::Error&) {
    }
  }
  // The shortest row is 14 bytes ("0,1,0,0,0,0,0\n").
  for (int w = 0; w < 3; ++w)
    if (results.rows(w) > static_cast<std::int64_t>(psgd::kWorkerTraceLimit / 14)) std::abort();
  return 0;
}
