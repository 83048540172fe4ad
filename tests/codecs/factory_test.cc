#include "codecs/factory.h"

#include <gtest/gtest.h>

#include "codecs/error_feedback.h"
#include "core/error.h"
#include "core/job_spec.h"

namespace psgd {
namespace {

// gc, ndc and ccdc are coding schemes of the roles (psgd/gc.h, psgd/ccdc.h) that send plain fp32
// or its bit patterns, not wire codecs.
bool is_coding_scheme(const std::string& name) {
  return name == "gc" || name == "ndc" || name == "ccdc";
}

TEST(CodecFactory, BuildsEveryKnownCodecAndRefusesUnknown) {
  for (const std::string& name : known_codecs()) {
    if (is_coding_scheme(name)) {
      EXPECT_THROW(make_codec({.name = name}), ConfigError);
      continue;
    }
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

TEST(CodecFactory, AutoErrorFeedbackIsOnForSignTopkRandkOnly) {
  for (const std::string& name : known_codecs()) {
    if (is_coding_scheme(name)) continue;
    const bool want = name == "sign" || name == "topk" || name == "randk";
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

TEST(CodecFactory, JobSpecOptionsReachTheCodec) {
  JobSpec job;
  job.codec = "topk";
  job.codec_ratio = 0.5;
  job.error_feedback = "off";
  job.server_codec = "fp16";
  const CodecSpec up = uplink_codec_spec(job, 3);
  EXPECT_EQ(up.name, "topk");
  EXPECT_EQ(up.ratio, 0.5);
  EXPECT_NE(up.seed, uplink_codec_spec(job, 4).seed);
  std::vector<float> g{1, 2, 3, 4};
  EXPECT_EQ(make_codec(up)->encode(g).bytes.size(), 1 + 8 + 2 * 4 + 1);  // k = 2, bitmap
  EXPECT_EQ(downlink_codec_spec(job).name, "fp16");
}

TEST(CodecFactory, BucketDefaultsPerCodecAndExplicitBucketsWin) {
  const std::vector<float> g(2000, 0.5f);
  JobSpec job;
  job.codec = "sign";
  job.error_feedback = "off";
  // sign: one scale for the whole gradient unless told otherwise.
  EXPECT_EQ(make_codec(uplink_codec_spec(job, 0))->encode(g).bytes.size(), 8 + 4 + 2000 / 8);
  job.codec_bucket = 512;
  EXPECT_EQ(make_codec(uplink_codec_spec(job, 0))->encode(g).bytes.size(), 8 + 4 * 4 + 2000 / 8);
  job.codec = "qsgd";
  job.codec_bucket = -1;  // qsgd: 512 by default, 5 bits per element at 8 levels
  EXPECT_EQ(make_codec(uplink_codec_spec(job, 0))->encode(g).bytes.size(),
            4 + 8 + 4 * 4 + 2000 * 5 / 8);
  job.codec_bucket = -2;
  EXPECT_THROW(job.validate(), ConfigError);
  EXPECT_THROW(make_codec({.name = "sign", .bucket = -2}), ConfigError);
}

}  // namespace
}  // namespace psgd
