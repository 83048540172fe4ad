// Every codec trains: 2 workers, ssgd, MLP on a small Fashion-MNIST subset, real processes on
// loopback. Accuracy must end well above chance (0.1); the uplink bytes must shrink as the codec
// promises.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "tests/integration/cluster.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::have_fashion_mnist;
using testing::Process;
using testing::read_file;
using testing::TempDir;
using testing::wait_for_port;

struct CodecCase {
  std::string codec;
  double min_accuracy;     // chance is 0.1
  double max_bytes_ratio;  // bytes_up relative to fp32 (upper bound, incl. framing)
  std::vector<std::string> flags = {};
};
void PrintTo(const CodecCase& c, std::ostream* os) {
  *os << c.codec;
}

class CodecTraining : public ::testing::TestWithParam<CodecCase> {};

TEST_P(CodecTraining, TwoWorkersLearn) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const CodecCase& c = GetParam();
  TempDir dir;
  std::vector<std::string> args{"--node_count",    "2",
                                "--working_ports", "0",
                                "--port_file",     dir.file("port"),
                                "--output",        dir.file("run"),
                                "--bind",          "127.0.0.1",
                                "--join_timeout",  "60",
                                "--io_timeout",    "30",
                                "--train_samples", "4000",
                                "--test_samples",  "1000",
                                "--epochs",        "2",
                                "--batch_size",    "32",
                                "--learn_rate",    "0.05",
                                "--seed",          "3",
                                "--codec",         c.codec,
                                "--threads",       "1"};
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  Process server(PSGD_INIT_SERVER, args, dir.file("server.out"), dir.file("server.err"));
  const int port = wait_for_port(dir.file("port"), server);
  ASSERT_GT(port, 0) << server.out() << server.err();
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<Process>(
        PSGD_CLIENT,
        std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port),
                                 "--connect_timeout", "10"},
        dir.file("client" + std::to_string(i) + ".out"),
        dir.file("client" + std::to_string(i) + ".err")));
  }
  auto logs = [&] {
    std::string s = "--- server\n" + server.out() + server.err();
    for (auto& cl : clients)
      s += "--- client\n" + cl->out() + cl->err();
    return s;
  };
  auto code = server.wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << logs();
  EXPECT_EQ(*code, 0) << logs();
  for (auto& cl : clients) {
    auto cc = cl->wait(30s);
    ASSERT_TRUE(cc.has_value()) << logs();
    EXPECT_EQ(*cc, 0) << logs();
  }
  const std::string run = dir.file("run");
  auto summary = nlohmann::json::parse(read_file(run + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["codec"], c.codec);
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), c.min_accuracy) << logs();
  // MLP 784-256-10: 203,530 parameters; 2 workers x 2 x 63 iterations of fp32 gradients.
  const double fp32_bytes = 203530.0 * 4 * 2 * 2 * 63;
  EXPECT_LT(summary["bytes_up"].get<double>(), c.max_bytes_ratio * fp32_bytes);
  const std::string workers = read_file(run + "/workers.csv");
  EXPECT_NE(workers.find("compression_error"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Codecs, CodecTraining,
    ::testing::Values(CodecCase{"fp16", 0.6, 0.51}, CodecCase{"bf16", 0.6, 0.51},
                      CodecCase{"qsgd", 0.6, 0.17}, CodecCase{"sign", 0.5, 0.04},
                      CodecCase{"topk", 0.5, 0.03}, CodecCase{"randk", 0.3, 0.02},
                      // Gradient coding: both workers hold both blocks; gc sends one fp32 sum
                      // per worker and iteration, ndc both block gradients.
                      CodecCase{"gc", 0.6, 1.01, {"--redundancy", "2"}},
                      CodecCase{"ndc", 0.6, 2.02, {"--redundancy", "2"}}),
    [](const auto& info) { return info.param.codec; });

}  // namespace
}  // namespace psgd
