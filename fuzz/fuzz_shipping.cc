// libFuzzer: a worker's side of --ship_data (experiments/data_shipping.h, nn/data_pack.h). The
// input is a sequence of DataChunk bodies from a hostile server, fed in order to the assembler as
// the client feeds them; a pack that assembles (its checksums hold) is unpacked into a Dataset. A
// first byte with its low bit set instead unpacks the rest of the input directly, as if it had
// passed the checksums. Anything malformed must be a ProtocolError or a ConfigError before any
// allocation larger than what arrived (libFuzzer's -malloc_limit_mb catches the rest).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "experiments/data_shipping.h"
#include "fuzz/input_reader.h"
#include "network/messages.h"
#include "nn/data_pack.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  psgd::fuzz::InputReader in(data + 1, size - 1);
  try {
    if (data[0] & 1) {
      const auto d = psgd::nn::unpack_dataset(in.rest(), "fuzz");
      if (d.images.size() != d.size() * static_cast<std::size_t>(d.sample_numel())) std::abort();
      return 0;
    }
    psgd::ChunkAssembler assembler;
    while (!in.done() && !assembler.complete()) {
      const auto m = psgd::decode_body(psgd::MessageType::kDataChunk, in.piece());
      assembler.add(std::get<psgd::DataChunk>(m));
    }
    if (assembler.complete()) (void)psgd::nn::unpack_dataset(assembler.bytes(), "fuzz shipped");
  } catch (const psgd::Error&) {
  }
  return 0;
}
