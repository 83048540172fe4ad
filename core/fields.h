#pragma once
// How an options struct lists its fields once (STYLE.md §3 and §11).
//
// Each component keeps its options in a plain struct beside it, with defaults on the members and
// a validate() that throws ConfigError naming the flag. The struct also lists its fields, once:
//
//   struct CodecOptions {
//     std::string codec = "plain";
//     template <class Self, class Visit>
//     static void fields(Self& self, Visit&& visit) {
//       visit("codec", self.codec, "Gradient codec, worker to server: ...");
//     }
//   };
//
// `Self` is the struct or a const one, `visit(name, member, help)` is called once per field in
// a fixed order. The name is the flag (--codec) and the JSON key ("codec"): the public contract
// that sweep scripts and config files use. Everything that needs the list iterates it: the
// command line (experiments/options_io.h binds each field to a CLI11 option with its help), the
// JSON reader and writer of config files, config.json and the Job sent to workers, and --check.
// Adding an option is one member, one visit line and its check in validate().
//
// Composite options (psgd::StrategyJob, the JobSpec) derive from the components' structs, so a
// member keeps its flat name (spec.codec), and their fields() call each part's fields() in turn.
// Supported member types: bool, int, std::int64_t, std::uint64_t, double, std::string,
// std::vector<int> and FlagChoice below.
#include <string>

namespace psgd {

// A word from a fixed set that may also be given as a bare flag, as a flag that used to be a bool
// grows modes (--ship_data: never|auto|always, the bare flag meaning always). `bare` is what the
// bare flag and, in JSON, `true` mean; `off` is what JSON `false` means, so files written when the
// flag was a bool keep their meaning. The struct's validate() checks the word.
struct FlagChoice {
  std::string value;
  const char* bare;
  const char* off;
  bool operator==(const char* word) const { return value == word; }
};

}  // namespace psgd
