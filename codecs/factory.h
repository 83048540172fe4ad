#pragma once
// The explicit codec factory (no static self-registration, STYLE.md "Avoid").
#include <memory>
#include <string>

#include "codecs/codec.h"

namespace psgd {

struct CodecSpec {
  std::string name = "plain";
};

// Throws ConfigError for an unknown name, listing the known ones.
std::unique_ptr<Codec> make_codec(const CodecSpec& spec);

}  // namespace psgd
