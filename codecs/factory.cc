#include "codecs/factory.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "codecs/plain.h"
#include "core/error.h"
#include "core/job_spec.h"

namespace psgd {

std::unique_ptr<Codec> make_codec(const CodecSpec& spec) {
  if (spec.name == "plain") return std::make_unique<PlainCodec>();
  throw ConfigError(fmt::format("--codec {}: unknown codec; choose one of: {}", spec.name,
                                fmt::join(known_codecs(), ", ")));
}

}  // namespace psgd
