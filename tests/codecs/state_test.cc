// A codec's state (Codec::state / restore_state, codecs/codec.h) is what a checkpoint keeps of a
// sender: a fresh codec given the state of one that has encoded k vectors encodes the next ones to
// exactly the bytes the original does. Every codec of the table, bare, with error feedback and
// with worker-side momentum in front (what a worker's uplink is built as).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "codecs/codec_table.h"
#include "codecs/factory.h"
#include "core/error.h"

namespace psgd {
namespace {

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(n);
  for (auto& v : g)
    v = normal(rng);
  return g;
}

std::vector<CodecSpec> senders() {
  std::vector<CodecSpec> specs;
  for (const std::string& name : codec_names()) {
    for (const char* ef : {"off", "on"}) {
      for (float momentum : {0.0f, 0.9f}) {
        specs.push_back(CodecSpec{.name = name,
                                  .ratio = 0.1,
                                  .bucket = 64,
                                  .error_feedback = ef,
                                  .seed = 11,
                                  .momentum = momentum,
                                  .warmup_steps = name == "topk" ? 6 : 0});
      }
    }
  }
  return specs;
}

std::string describe(const CodecSpec& s) {
  return fmt::format("{} error_feedback {} momentum {}", s.name, s.error_feedback, s.momentum);
}

TEST(CodecState, ARestoredSenderEncodesTheSameBytesAsTheOriginal) {
  constexpr std::size_t kSize = 300;
  for (const CodecSpec& spec : senders()) {
    SCOPED_TRACE(describe(spec));
    auto original = make_codec(spec);
    for (std::uint32_t step = 0; step < 4; ++step)
      original->encode(gaussian(kSize, step));
    const auto state = original->state();
    auto restored = make_codec(spec);
    restored->restore_state(state);
    EXPECT_EQ(restored->state(), state);
    for (std::uint32_t step = 4; step < 10; ++step) {
      const auto g = gaussian(kSize, step);
      EXPECT_EQ(restored->encode(g).bytes, original->encode(g).bytes) << "encode " << step;
    }
  }
}

// A fresh sender's state restores a fresh sender: encoding from either gives the same bytes.
TEST(CodecState, EmptyStateIsAFreshSender) {
  for (const CodecSpec& spec : senders()) {
    SCOPED_TRACE(describe(spec));
    auto used = make_codec(spec);
    used->encode(gaussian(50, 1));
    used->restore_state({});
    auto fresh = make_codec(spec);
    const auto g = gaussian(50, 2);
    EXPECT_EQ(used->encode(g).bytes, fresh->encode(g).bytes);
  }
}

// State is read like anything else from a file: truncated, lengthened or another codec's state is
// refused with ProtocolError, never read past its end.
TEST(CodecState, StateThatDoesNotFitIsRefused) {
  for (const CodecSpec& spec : senders()) {
    SCOPED_TRACE(describe(spec));
    auto codec = make_codec(spec);
    codec->encode(gaussian(40, 3));
    auto state = codec->state();
    if (state.empty()) {
      EXPECT_THROW(make_codec(spec)->restore_state(std::vector<std::uint8_t>{1}), ProtocolError);
      continue;
    }
    for (std::size_t n = 1; n < state.size(); n += 1 + state.size() / 40) {
      EXPECT_THROW(make_codec(spec)->restore_state(std::span(state).first(n)), ProtocolError)
          << n << " of " << state.size() << " bytes";
    }
    state.push_back(0);
    EXPECT_THROW(make_codec(spec)->restore_state(state), ProtocolError);
  }
}

}  // namespace
}  // namespace psgd
