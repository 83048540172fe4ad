// The plug-in tables (psgd/strategy_table.h, psgd/coding_table.h, codecs/codec_table.h) are the
// one list of what psgd can run: these tests iterate them, so a new entry is tested by being
// added. Every strategy and coded scheme finishes a job over the in-memory Transport and moves
// the model towards the workers' optimum; every knob is refused where its entry says it does not
// apply.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "codecs/codec_table.h"
#include "core/error.h"
#include "core/fields_json.h"
#include "core/optimizer_table.h"
#include "psgd/allreduce_compression.h"
#include "psgd/factory.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

using testing::RoleSim;

std::string error_of(const StrategyJob& job) {
  try {
    job.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

// Distance of the parameters to the mean of the workers' targets (ToyLearner: worker w pulls
// towards (w + 1) * (i + 1)).
double distance_to_optimum(const RoleSim& sim) {
  const int n = sim.schedule.node_count;
  double d = 0;
  for (std::size_t i = 0; i < sim.params.size(); ++i) {
    const double optimum = (n + 1) / 2.0 * static_cast<double>(i + 1);
    d += (sim.params[i] - optimum) * (sim.params[i] - optimum);
  }
  return std::sqrt(d);
}

void expect_learns(StrategyJob job, const std::string& what) {
  ASSERT_EQ(error_of(job), "no error") << what;
  const Schedule schedule = make_schedule(job, 64 * job.node_count * 8);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    RoleSim sim(job, schedule);
    const double before = distance_to_optimum(sim);
    sim.start();
    ASSERT_TRUE(sim.run_random(seed)) << what << " stalled (seed " << seed << ")";
    EXPECT_EQ(sim.server->iteration(), schedule.total_iterations()) << what;
    EXPECT_LT(distance_to_optimum(sim), 0.5 * before) << what << " did not learn";
  }
}

TEST(StrategyTable, EveryStrategyFinishesAJobAndLearnsOverTheInMemoryTransport) {
  ASSERT_GE(strategy_table().size(), 6u);
  for (const StrategyEntry& entry : strategy_table()) {
    StrategyJob job = testing::job(std::string(entry.name), 3, 0.05);
    job.batch_size = 64;
    job.epochs = 2;
    expect_learns(job, std::string(entry.name));
  }
}

TEST(StrategyTable, EveryCompressorTravelsWithEveryStrategyThatCarriesOne) {
  for (const StrategyEntry& strategy : strategy_table()) {
    for (const CodecEntry& codec : codec_table()) {
      StrategyJob job = testing::job(std::string(strategy.name), 2, 0.05);
      job.codec = std::string(codec.name);
      job.batch_size = 64;
      job.epochs = 3;
      if (codec.options & kUsesRatio) job.codec_ratio = 0.5;
      const std::string what = fmt::format("{} with {}", strategy.name, codec.name);
      if (!strategy.compressors && codec.name != "plain") {
        // An allreduce carries what it can sum (psgd/allreduce_compression.h): fp16 among the
        // dense casts; the tensor-shaped ones (powersgd) need a model, tested in
        // compressed_allreduce_test.cc and end to end.
        const AllreduceCompressionEntry* summed = find_allreduce_compression(codec.name);
        if (strategy.allreduce_compressions && summed != nullptr && !summed->needs_tensors) {
          expect_learns(job, what);
          continue;
        }
        const std::string why = error_of(job);
        EXPECT_TRUE(why.find("carries --codec plain only") != std::string::npos ||
                    why.find("carries only compressions whose sums mean something") !=
                        std::string::npos)
            << what << ": " << why;
        continue;
      }
      expect_learns(job, what);
    }
  }
}

// Every optimiser runs wherever a strategy applies updates (the server, or every worker) and
// learns; with a schedule and warm-up too.
TEST(OptimizerTable, EveryOptimiserRunsWithEveryStrategyAndLearns) {
  for (const OptimizerEntry& optimizer : optimizer_table()) {
    for (const StrategyEntry& entry : strategy_table()) {
      StrategyJob job = testing::job(std::string(entry.name), 3, 0.1, 0.5);
      job.optimizer = std::string(optimizer.name);
      if (!optimizer.sgd_momentum) {
        job.momentum = 0.0;
        job.learn_rate = optimizer.name == "adagrad"   ? 2.0
                         : optimizer.name == "rmsprop" ? 0.2
                                                       : 0.5;
      }
      job.lr_schedule = "cosine";
      job.lr_warmup_epochs = 0.25;
      job.batch_size = 64;
      job.epochs = 2;
      expect_learns(job, fmt::format("{} with {}", entry.name, optimizer.name));
    }
  }
}

TEST(CodingTable, EveryCodedSchemeFinishesAJobUnderItsStrategy) {
  ASSERT_EQ(coding_table().size(), 3u);
  for (const CodingEntry& entry : coding_table()) {
    StrategyJob job = testing::job(std::string(entry.strategy), 4, 0.05);
    job.codec = std::string(entry.name);
    job.redundancy = 2;
    job.batch_size = 64;
    job.epochs = 2;
    // ccdc checks that replicas of a block computed the same gradient (RoleSim's toy workers pull
    // towards targets of their own): tests/psgd/ccdc_test.cc trains it with consistent blocks.
    if (entry.name != "ccdc") expect_learns(job, std::string(entry.name));
    EXPECT_EQ(error_of(job), "no error");
    // Under any other strategy it is refused with its reason, unless that is an accepted
    // spelling (canonicalize() rewrites it first).
    for (const StrategyEntry& other : strategy_table()) {
      if (other.name == entry.strategy) continue;
      StrategyJob wrong = job;
      wrong.psgd = std::string(other.name);
      const auto notes = wrong.canonicalize();
      if (!notes.empty()) {
        EXPECT_EQ(wrong.psgd, entry.strategy);
        continue;
      }
      EXPECT_NE(error_of(wrong).find(std::string(entry.strategy_reason)), std::string::npos)
          << entry.name << " under " << other.name << ": " << error_of(wrong);
    }
  }
}

TEST(CodingTable, ParallelSgdsSpellingOfCcdcIsTheCodedAllToAll) {
  StrategyJob job;
  job.psgd = "ssgd";
  job.codec = "ccdc";
  job.redundancy = 2;
  const auto notes = job.canonicalize();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("Parallel-SGD"), std::string::npos);
  EXPECT_EQ(job.psgd, "broadcast");
  EXPECT_EQ(error_of(job), "no error");
}

TEST(StrategyTable, EveryKnobAnEntryNamesIsAStrategyOption) {
  std::vector<std::string> fields;
  const StrategyOptions defaults;
  StrategyOptions::fields(
      defaults, [&](const char* name, const auto&, const auto&) { fields.emplace_back(name); });
  for (const StrategyEntry& entry : strategy_table())
    for (std::string_view option : entry.options)
      EXPECT_NE(std::find(fields.begin(), fields.end(), option), fields.end())
          << entry.name << " names " << option;
}

// Setting a knob of one strategy for another is refused, naming the strategies that read it.
TEST(StrategyTable, AKnobIsRefusedWhereNoEntryReadsIt) {
  const std::pair<const char*, void (*)(StrategyJob&)> knobs[] = {
      {"wait_for", [](StrategyJob& j) { j.wait_for = 1; }},
      {"staleness", [](StrategyJob& j) { j.staleness = 1; }},
      {"staleness_lr", [](StrategyJob& j) { j.staleness_lr = true; }},
      {"delay_compensation", [](StrategyJob& j) { j.delay_compensation = 0.5; }},
      {"sync_period", [](StrategyJob& j) { j.sync_period = 2; }},
      {"local_after_epochs", [](StrategyJob& j) { j.local_after_epochs = 1; }},
      {"allreduce_backend", [](StrategyJob& j) { j.allreduce_backend = "gloo"; }},
  };
  for (const auto& [name, set] : knobs) {
    for (const StrategyEntry& entry : strategy_table()) {
      StrategyJob job = testing::job(std::string(entry.name), 2, 0.05);
      set(job);
      const bool reads =
          std::find(entry.options.begin(), entry.options.end(), name) != entry.options.end();
      const std::string e = error_of(job);
      if (reads) {
        EXPECT_EQ(e.find(fmt::format("--{} applies", name)), std::string::npos) << e;
      } else {
        EXPECT_NE(e.find(fmt::format("--{} applies to --psgd", name)), std::string::npos)
            << entry.name << ": " << e;
      }
    }
  }
}

// The hint after "lost worker N; <strategy> cannot continue without it" names what would let the
// run go on, never a flag the job already has, and says nothing where no flag would help.
TEST(StrategyTable, ALossHintNeverSuggestsWhatTheJobAlreadyDoes) {
  // The strategy's own view (the whole job's checks come on top: JobSpecLossHint).
  auto hint = [](StrategyJob job, int left) {
    const auto f = strategy_of(job).on_loss_hint;
    return f ? f(job, left).text : std::string();
  };
  StrategyJob ssgd = testing::job("ssgd", 4, 0.05);
  EXPECT_NE(hint(ssgd, 3).find("--wait_for k < node_count lets ssgd carry on"), std::string::npos);
  ssgd.wait_for = 2;
  EXPECT_EQ(hint(ssgd, 1), " (each round needs --wait_for 2 gradients and 1 worker is left)");
  EXPECT_EQ(hint(testing::job("ssgd", 1, 0.05), 0), "");  // its only worker: nothing to suggest

  StrategyJob ring = testing::job("allreduce", 4, 0.05);
  EXPECT_NE(hint(ring, 3).find("--allreduce_on_loss shrink"), std::string::npos);
}

TEST(CodecTable, ACodecKnobIsRefusedWhereTheCodecDoesNotReadIt) {
  const std::pair<unsigned, void (*)(StrategyJob&)> knobs[] = {
      {kUsesLevels, [](StrategyJob& j) { j.codec_levels = 4; }},
      {kUsesRatio, [](StrategyJob& j) { j.codec_ratio = 0.1; }},
      {kUsesBucket, [](StrategyJob& j) { j.codec_bucket = 64; }},
      {kUsesScope, [](StrategyJob& j) { j.codec_scope = "tensor"; }},
  };
  for (const auto& [bit, set] : knobs) {
    for (const CodecEntry& codec : codec_table()) {
      StrategyJob job;
      job.codec = std::string(codec.name);
      set(job);
      const std::string e = error_of(job);
      EXPECT_EQ(e.find("applies to --codec") == std::string::npos, (codec.options & bit) != 0)
          << codec.name << ": " << e;
    }
  }
}

}  // namespace
}  // namespace psgd
