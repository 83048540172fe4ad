#pragma once
// The compressors, declared once (STYLE.md §11: a list exists once). Everything that lists codecs
// iterates this table: make_codec(), validation and --help (psgd::StrategyJob, codecs/options.h),
// the codec tests and fuzz seeds, the README's table. There is no self-registration.
//
// Adding a codec: its own codecs/<name>.{h,cc} implementing Codec (codecs/codec.h), one entry in
// codec_table.cc, tests in tests/codecs/ (the table-driven ones pick it up by themselves), and a
// line in the README's codec table. The recipe is in README.md, "Adding a codec or a strategy".
//
// gc, ndc and ccdc are not here: they are coded-redundancy schemes that replace a strategy's roles
// (psgd/coding_table.h), selected with --codec for compatibility with Parallel-SGD.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

struct CodecSpec;

// Which of the --codec_* options a codec reads (a job that sets one its codec ignores is refused).
enum CodecOption : unsigned {
  kUsesLevels = 1u << 0,  // --codec_levels
  kUsesRatio = 1u << 1,   // --codec_ratio
  kUsesBucket = 1u << 2,  // --codec_bucket
  kUsesScope = 1u << 3,   // --codec_scope, --codec_warmup_epochs, --codec_warmup_ratio
  kUsesRank = 1u << 4,    // --codec_rank (powersgd, an allreduce compression: psgd/)
};

struct CodecEntry {
  std::string_view name;
  std::string_view summary;  // one line: what travels, and the paper
  // --error_feedback auto turns error feedback on (biased compressors that need it to converge).
  bool error_feedback_by_default = false;
  // A cast of every value (no sampling, no sparsity): may also carry parameters (--server_codec).
  bool dense = false;
  unsigned options = 0;  // CodecOption bits
  // The bucket used when --codec_bucket is -1 (kUsesBucket codecs).
  std::uint64_t default_bucket = 0;
  // Builds the bare codec (make_codec() adds error feedback and momentum correction around it).
  std::unique_ptr<Codec> (*make)(const CodecSpec& spec, std::uint64_t bucket) = nullptr;
};

std::span<const CodecEntry> codec_table();
// nullptr when `name` is not a compressor.
const CodecEntry* find_codec(std::string_view name);
// The names, in table order.
std::vector<std::string> codec_names();
std::vector<std::string> dense_codec_names();

}  // namespace psgd
