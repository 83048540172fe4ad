#include "psgd/job.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "codecs/codec_table.h"
#include "core/error.h"
#include "core/fields_json.h"
#include "psgd/allreduce_compression.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

// The CodecOption bit a compressor sets to read the option `name` (0: every codec reads it).
unsigned option_bit(const std::string& name) {
  if (name == "codec_levels") return kUsesLevels;
  if (name == "codec_ratio") return kUsesRatio;
  if (name == "codec_bucket") return kUsesBucket;
  if (name.starts_with("codec_scope") || name.starts_with("codec_warmup")) return kUsesScope;
  if (name == "codec_rank") return kUsesRank;
  return 0;
}

std::string codecs_reading(unsigned bit) {
  std::vector<std::string> names;
  for (const CodecEntry& e : codec_table())
    if (e.options & bit) names.emplace_back(e.name);
  for (const AllreduceCompressionEntry& e : allreduce_compression_table())
    if (e.options & bit) names.emplace_back(fmt::format("{} (--psgd allreduce)", e.name));
  return fmt::format("{}", fmt::join(names, ", "));
}

void validate_codec_name(const StrategyJob& job) {
  if (find_codec(job.codec) || find_coding(job.codec) || find_allreduce_compression(job.codec)) {
    return;
  }
  throw ConfigError(fmt::format(
      "--codec {}: unknown codec; choose a compressor ({}), a coded-redundancy scheme ({}) or, "
      "under --psgd allreduce, an allreduce compression ({})",
      job.codec, fmt::join(codec_names(), ", "), fmt::join(coding_names(), ", "),
      fmt::join(allreduce_compression_names(), ", ")));
}

// A knob set that the job's codec does not read would be dropped silently: refuse it.
void validate_codec_options(const StrategyJob& job, unsigned reads) {
  for (const std::string& name : changed_fields(static_cast<const CodecOptions&>(job))) {
    const unsigned bit = option_bit(name);
    if (bit != 0 && !(reads & bit)) {
      throw ConfigError(fmt::format("--{} applies to --codec {} only, not --codec {}", name,
                                    codecs_reading(bit), job.codec));
    }
  }
}

// Under a strategy whose --codec is an allreduce compression (psgd/allreduce_compression.h).
void validate_allreduce_compression(const StrategyJob& job) {
  const AllreduceCompressionEntry* entry = find_allreduce_compression(job.codec);
  if (entry == nullptr) {
    throw ConfigError(fmt::format(
        "--psgd {} with --codec {}: an allreduce sums what it sends at every hop, so it carries "
        "only compressions whose sums mean something: {}",
        job.psgd, job.codec, fmt::join(allreduce_compression_names(), ", ")));
  }
  if (job.error_feedback != "auto") {
    throw ConfigError(fmt::format(
        "--error_feedback {} with --psgd {}: an allreduce compression keeps its own (powersgd "
        "always does, fp16 and plain need none)",
        job.error_feedback, job.psgd));
  }
  validate_codec_options(job, entry->options);
}

// A strategy knob set that the job's strategy does not read is refused, naming who reads it.
void validate_strategy_options(const StrategyJob& job, const StrategyEntry& strategy) {
  auto reads = [](const StrategyEntry& e, const std::string& name) {
    return std::find(e.options.begin(), e.options.end(), name) != e.options.end();
  };
  for (const std::string& name : changed_fields(static_cast<const StrategyOptions&>(job))) {
    if (name == "psgd" || name == "codec" || reads(strategy, name)) continue;
    std::vector<std::string> readers;
    for (const StrategyEntry& e : strategy_table())
      if (reads(e, name)) readers.emplace_back(e.name);
    throw ConfigError(fmt::format("--{} applies to --psgd {} only, not --psgd {}", name,
                                  fmt::join(readers, " or "), job.psgd));
  }
}

}  // namespace

std::vector<std::string> StrategyJob::canonicalize() {
  std::vector<std::string> notes;
  if (const CodingEntry* coding = find_coding(codec); coding && psgd != coding->strategy) {
    const auto& also = coding->also_under;
    if (std::find(also.begin(), also.end(), psgd) != also.end()) {
      notes.push_back(fmt::format(
          "--psgd {} --codec {} is Parallel-SGD's spelling of {}: it runs as --psgd {} --codec {} "
          "(recorded so in config.json)",
          psgd, codec, coding->summary, coding->strategy, codec));
      psgd = std::string(coding->strategy);
    }
  }
  return notes;
}

void StrategyJob::validate() const {
  ClusterOptions::validate();
  StrategyOptions::validate();
  CodecOptions::validate();
  OptimizerOptions::validate();
  LrScheduleOptions::validate();
  ModelAverageOptions::validate();
  const StrategyEntry& strategy = strategy_of(*this);
  validate_codec_name(*this);
  validate_strategy_options(*this, strategy);
  if (const CodingEntry* coding = find_coding(codec)) {
    if (psgd != coding->strategy) {
      throw ConfigError(fmt::format("--codec {} with --psgd {}: {}; use --psgd {}", codec, psgd,
                                    coding->strategy_reason, coding->strategy));
    }
    if (coding->validate) coding->validate(*this);
    validate_codec_options(*this, 0);  // exact fp32: no compressor options
  } else if (strategy.allreduce_compressions) {
    validate_allreduce_compression(*this);
  } else {
    const CodecEntry* found = find_codec(codec);
    if (found == nullptr) {
      throw ConfigError(fmt::format(
          "--codec {} with --psgd {}: it compresses what an allreduce sums; use --psgd allreduce",
          codec, psgd));
    }
    const CodecEntry& entry = *found;
    if (!strategy.compressors && codec != "plain") {
      throw ConfigError(fmt::format(
          "--psgd {} with --codec {}: an allreduce sums fp32 gradients at every hop, so it "
          "carries --codec plain only",
          psgd, codec));
    }
    validate_codec_options(*this, entry.options);
  }
  if (momentum_at == "worker" && !strategy.worker_momentum) {
    throw ConfigError(fmt::format(
        "--momentum_at worker with --psgd {}: its workers already run their own optimiser; use "
        "--momentum_at server or auto",
        psgd));
  }
  if (model_average != "auto" && parse_model_average(model_average) > 0 &&
      !strategy.server_holds_model) {
    std::vector<std::string> holders;
    for (const StrategyEntry& e : strategy_table())
      if (e.server_holds_model) holders.emplace_back(e.name);
    throw ConfigError(
        fmt::format("--model_average {} with --psgd {}: averaging applies to the parameter-server "
                    "strategies ({}), whose server holds the model",
                    model_average, psgd, fmt::join(holders, ", ")));
  }
  if (strategy.validate) strategy.validate(*this);
}

double StrategyJob::model_average_decay() const {
  // auto: the asynchronous strategies, whose last iterate carries the noise of stale gradients,
  // evaluate an average (core/model_average.h has the measurements); the synchronous ones their
  // last iterate, as before the option existed (ssgd then matches torch.optim step for step).
  if (model_average == "auto") {
    const StrategyEntry* s = find_strategy(psgd);
    return s && s->per_worker_updates ? kAsyncModelAverageDecay : 0.0;
  }
  return parse_model_average(model_average);
}

std::string StrategyJob::short_name() const {
  return fmt::format("{}-{}-n{}", psgd, codec, node_count);
}

}  // namespace psgd
