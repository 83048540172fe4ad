#include "codecs/factory.h"

#include <gtest/gtest.h>

#include "codecs/codec_table.h"
#include "codecs/error_feedback.h"
#include "core/error.h"

namespace psgd {
namespace {

TEST(CodecFactory, BuildsEveryCodecOfTheTableAndRefusesUnknown) {
  ASSERT_GE(codec_table().size(), 7u);
  for (const std::string& name : codec_names()) {
    auto codec = make_codec({.name = name});
    ASSERT_NE(codec, nullptr);
    EXPECT_EQ(codec->name(), name);
    std::vector<float> g{1.0f, -2.0f, 3.0f}, out(3);
    codec->decode(codec->encode(g), out);
  }
  try {
    make_codec({.name = "zip"});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("topk"), std::string::npos);
  }
  EXPECT_THROW(make_codec({.name = "topk", .ratio = 0}), ConfigError);
  EXPECT_THROW(make_codec({.name = "randk", .ratio = 1.5}), ConfigError);
  EXPECT_THROW(make_codec({.name = "qsgd", .levels = 0}), ConfigError);
  EXPECT_THROW(make_codec({.name = "sign", .error_feedback = "maybe"}), ConfigError);
}

TEST(CodecFactory, AutoErrorFeedbackFollowsTheTable) {
  for (const CodecEntry& entry : codec_table()) {
    const std::string name(entry.name);
    const bool want = entry.error_feedback_by_default;
    auto codec = make_codec({.name = name});
    EXPECT_EQ(dynamic_cast<ErrorFeedbackCodec*>(codec.get()) != nullptr, want) << name;
    EXPECT_NE(
        dynamic_cast<ErrorFeedbackCodec*>(make_codec({.name = name, .error_feedback = "on"}).get()),
        nullptr);
    EXPECT_EQ(dynamic_cast<ErrorFeedbackCodec*>(
                  make_codec({.name = name, .error_feedback = "off"}).get()),
              nullptr);
  }
}

TEST(CodecFactory, TheTableSaysWhatTheDocumentationSays) {
  // The biased compressors are the ones that need error feedback; the casts may carry parameters.
  for (const CodecEntry& entry : codec_table()) {
    const bool biased = entry.name == "sign" || entry.name == "topk" || entry.name == "randk";
    EXPECT_EQ(entry.error_feedback_by_default, biased) << entry.name;
    const bool cast = entry.name == "plain" || entry.name == "fp16" || entry.name == "bf16";
    EXPECT_EQ(entry.dense, cast) << entry.name;
    EXPECT_FALSE(entry.summary.empty()) << entry.name;
  }
  EXPECT_EQ(find_codec("gc"), nullptr);  // a coded scheme of the roles (psgd/coding_table.h)
  EXPECT_EQ(default_bucket("qsgd"), 512u);
  EXPECT_EQ(default_bucket("sign"), 0u);
}

TEST(CodecFactory, BucketDefaultsPerCodecAndExplicitBucketsWin) {
  const std::vector<float> g(2000, 0.5f);
  // sign: one scale for the whole gradient unless told otherwise.
  EXPECT_EQ(make_codec({.name = "sign", .error_feedback = "off"})->encode(g).bytes.size(),
            8 + 4 + 2000 / 8);
  EXPECT_EQ(
      make_codec({.name = "sign", .bucket = 512, .error_feedback = "off"})->encode(g).bytes.size(),
      8 + 4 * 4 + 2000 / 8);
  // qsgd: 512 by default, 5 bits per element at 8 levels
  EXPECT_EQ(make_codec({.name = "qsgd", .error_feedback = "off"})->encode(g).bytes.size(),
            4 + 8 + 4 * 4 + 2000 * 5 / 8);
  EXPECT_THROW(make_codec({.name = "sign", .bucket = -2}), ConfigError);
}

}  // namespace
}  // namespace psgd
