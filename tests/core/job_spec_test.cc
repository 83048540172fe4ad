#include "core/job_spec.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace psgd {
namespace {

TEST(JobSpec, DefaultsAreValid) {
  EXPECT_NO_THROW(JobSpec{}.validate());
}

TEST(JobSpec, JsonRoundTrip) {
  JobSpec a;
  a.node_count = 7;
  a.codec = "plain";
  a.learn_rate = 0.25;
  a.working_ports = {1000, 1001};
  a.seed = 99;
  JobSpec b;
  from_json(nlohmann::json(a), b);
  EXPECT_EQ(nlohmann::json(a), nlohmann::json(b));
}

TEST(JobSpec, UnknownKeyIsAnError) {
  JobSpec s;
  EXPECT_THROW(from_json(nlohmann::json{{"node_cuont", 3}}, s), ConfigError);
}

TEST(JobSpec, SinglePortMayBeANumber) {
  JobSpec s;
  from_json(nlohmann::json{{"working_ports", 4242}}, s);
  ASSERT_EQ(s.working_ports.size(), 1u);
  EXPECT_EQ(s.working_ports[0], 4242);
}

TEST(JobSpec, WrongTypeIsAConfigError) {
  JobSpec s;
  EXPECT_THROW(from_json(nlohmann::json{{"epochs", "many"}}, s), ConfigError);
}

TEST(JobSpec, ImpossibleValuesNameTheFlag) {
  auto message_of = [](JobSpec s) {
    try {
      s.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  JobSpec s;
  s.node_count = 0;
  EXPECT_NE(message_of(s).find("--node_count"), std::string::npos);
  s = JobSpec{};
  s.codec = "zip";
  EXPECT_NE(message_of(s).find("--codec zip"), std::string::npos);
  s = JobSpec{};
  s.redundancy = 5;
  EXPECT_NE(message_of(s).find("--redundancy"), std::string::npos);
  s = JobSpec{};
  s.psgd = "magic";
  EXPECT_NE(message_of(s).find("--psgd"), std::string::npos);
  s = JobSpec{};
  s.learn_rate = -1;
  EXPECT_NE(message_of(s).find("--learn_rate"), std::string::npos);
}

}  // namespace
}  // namespace psgd
