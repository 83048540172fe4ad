#pragma once
// The codecs fuzz_payload decodes with, chosen by its first input byte: one per entry of the
// codec table (codecs/codec_table.h) with the options it reads set to small values, plus qsgd at
// its widest level count. make_seeds writes one valid payload per spec with the spec's index as
// the selector, so both read this one list and a new codec is fuzzed by being in the table.
#include <vector>

#include "codecs/codec_table.h"
#include "codecs/factory.h"

namespace psgd::fuzz {

inline std::vector<CodecSpec> codec_specs() {
  std::vector<CodecSpec> specs;
  for (const CodecEntry& e : codec_table()) {
    CodecSpec s{.name = std::string(e.name), .error_feedback = "off"};
    if (e.options & kUsesLevels) s.levels = 4;
    if (e.options & kUsesRatio) s.ratio = 0.25;
    if (e.options & kUsesBucket) s.bucket = 16;
    specs.push_back(s);
  }
  specs.push_back(CodecSpec{.name = "qsgd", .levels = 255, .bucket = 0, .error_feedback = "off"});
  return specs;
}

}  // namespace psgd::fuzz
