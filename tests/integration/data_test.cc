// Data sources end to end: a hand-written CSV, --ship_data to clients that cannot read the data,
// resnet8 on a generated CIFAR-10 directory, a reconstruction run, and bad data refused early.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "tests/integration/blobs.h"
#include "tests/integration/cluster.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::blobs_csv;
using testing::Process;
using testing::read_file;
using testing::TempDir;
using testing::wait_for_port;

void write_text(const std::string& path, const std::string& s) {
  std::ofstream out(path);
  out << s;
}

struct DataRun {
  TempDir dir;
  std::unique_ptr<Process> server;
  std::vector<std::unique_ptr<Process>> clients;

  // Starts the server with `extra`, then one client per entry of client_args, each in its own
  // empty working directory.
  void start(int nodes, std::vector<std::string> extra,
             std::vector<std::vector<std::string>> client_args = {}) {
    std::vector<std::string> args{"--node_count",    std::to_string(nodes),
                                  "--working_ports", "0",
                                  "--port_file",     dir.file("port"),
                                  "--output",        dir.file("run"),
                                  "--bind",          "127.0.0.1",
                                  "--join_timeout",  "60",
                                  "--io_timeout",    "30"};
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<Process>(PSGD_INIT_SERVER, args, dir.file("server.out"),
                                       dir.file("server.err"));
    const int port = wait_for_port(dir.file("port"), *server);
    ASSERT_GT(port, 0) << server->out() << server->err();
    client_args.resize(static_cast<std::size_t>(nodes));
    for (int i = 0; i < nodes; ++i) {
      const std::string cwd = dir.file("client" + std::to_string(i));
      std::filesystem::create_directories(cwd);
      std::vector<std::string> a{
          "--ip", "127.0.0.1", "--port", std::to_string(port), "--connect_timeout", "10"};
      a.insert(a.end(), client_args[i].begin(), client_args[i].end());
      clients.push_back(std::make_unique<Process>(PSGD_CLIENT, a, cwd + ".out", cwd + ".err", cwd));
    }
  }

  std::string logs() const {
    std::string s = "--- server\n" + server->out() + server->err();
    for (std::size_t i = 0; i < clients.size(); ++i) {
      s += "--- client " + std::to_string(i) + "\n" + clients[i]->out() + clients[i]->err();
    }
    return s;
  }

  // Waits for everything to exit 0 and returns summary.json.
  nlohmann::json finish() {
    auto code = server->wait(120s);
    EXPECT_TRUE(code.has_value()) << "server hung\n" << logs();
    EXPECT_EQ(code.value_or(-1), 0) << logs();
    for (auto& c : clients)
      EXPECT_EQ(c->wait(30s).value_or(-1), 0) << logs();
    return nlohmann::json::parse(read_file(dir.file("run") + "/summary.json"));
  }
};

TEST(Data, AHandWrittenCsvTrainsWithZscoreAndAValidationSplit) {
  DataRun r;
  write_text(r.dir.file("train.csv"), blobs_csv(400, 1));
  write_text(r.dir.file("test.csv"), blobs_csv(100, 2));
  ASSERT_NO_FATAL_FAILURE(r.start(
      2, {"--dataset", "csv:train=" + r.dir.file("train.csv") + ",test=" + r.dir.file("test.csv"),
          "--label_column", "label", "--normalize", "zscore", "--validation_split", "0.25",
          "--epochs", "3", "--batch_size", "16", "--learn_rate", "0.05"}));
  auto summary = r.finish();
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.9) << r.logs();
  EXPECT_GT(summary["final_validation_accuracy"].get<double>(), 0.9);
  auto config = nlohmann::json::parse(read_file(r.dir.file("run") + "/config.json"));
  EXPECT_EQ(config["data"]["train_samples"], 300);
  EXPECT_EQ(config["data"]["validation_samples"], 100);
  EXPECT_EQ(config["data"]["normalizer"]["kind"], "zscore");
  EXPECT_EQ(config["data"]["normalizer"]["shift"].size(), 3u);
  const std::string metrics = read_file(r.dir.file("run") + "/metrics.csv");
  EXPECT_NE(metrics.find("samples,validation_loss,validation_accuracy,learn_rate,test_rmse,test_r2,"
                         "validation_rmse,validation_r2\n"),
            std::string::npos);
  EXPECT_NE(r.server->out().find("csv train: 400 samples of 1x1x3, 2 classes"), std::string::npos)
      << r.logs();
}

// A run started with relative data paths is evaluated from any directory: evaluate reads the
// job's relative paths from where the run was started (config.json provenance.working_directory);
// from elsewhere it said "file 'train.csv' does not exist".
TEST(Data, EvaluateReadsARunsRelativeDataPathsFromWhereItWasStarted) {
  TempDir dir;
  const std::string started = dir.file("lab");
  std::filesystem::create_directories(started);
  std::filesystem::create_directories(dir.file("elsewhere"));
  write_text(started + "/train.csv", blobs_csv(300, 5));
  write_text(started + "/test.csv", blobs_csv(100, 6));
  Process run(
      PSGD_INIT_SERVER,
      {"--simulate", "--node_count", "2", "--dataset", "csv:train=train.csv,test=test.csv",
       "--label_column", "label", "--epochs", "2", "--batch_size", "16", "--output", "runs/csv"},
      dir.file("run.out"), dir.file("run.err"), started);
  ASSERT_EQ(run.wait(120s).value_or(-1), 0) << run.out() << run.err();
  const std::string run_dir = started + "/runs/csv";
  const auto summary = nlohmann::json::parse(read_file(run_dir + "/summary.json"));
  Process eval(PSGD_EVALUATE, {run_dir, "--json"}, dir.file("eval.out"), dir.file("eval.err"),
               dir.file("elsewhere"));
  ASSERT_EQ(eval.wait(60s).value_or(-1), 0) << eval.out() << eval.err();
  const auto result = nlohmann::json::parse(eval.out());
  EXPECT_DOUBLE_EQ(result["test_accuracy"].get<double>(),
                   summary["final_test_accuracy"].get<double>());
  EXPECT_EQ(
      nlohmann::json::parse(read_file(run_dir + "/config.json"))["provenance"]["working_directory"],
      std::filesystem::canonical(started).string());
}

TEST(Data, ShipDataFeedsClientsThatCannotReadTheDataset) {
  DataRun r;
  write_text(r.dir.file("train.csv"), blobs_csv(300, 3));
  const std::string spec = "csv:" + r.dir.file("train.csv");
  const std::string empty = r.dir.file("empty");
  std::filesystem::create_directories(empty);
  // Clients see no Fashion-MNIST either, and are pointed at a file that does not exist.
  setenv("PSGD_FASHION_MNIST_DIR", empty.c_str(), 1);
  ASSERT_NO_FATAL_FAILURE(r.start(2,
                                  {"--dataset", spec, "--label_column", "label", "--ship_data",
                                   "--normalize", "minmax", "--epochs", "2", "--batch_size", "16"},
                                  {{"--dataset", "csv:/nonexistent/train.csv"}, {}}));
  unsetenv("PSGD_FASHION_MNIST_DIR");
  auto summary = r.finish();
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.85) << r.logs();
  EXPECT_GT(summary["data_bytes"].get<double>(), 1000) << r.logs();
  EXPECT_GT(summary["data_seconds"].get<double>(), 0);
  ASSERT_EQ(summary["shipped_workers"].size(), 1u) << summary;
  EXPECT_EQ(summary["shipped_workers"][0]["dataset"], "csv:/nonexistent/train.csv") << summary;
  const std::string c0 = r.clients[0]->out();
  EXPECT_NE(c0.find("the server ships"), std::string::npos) << r.logs();
  EXPECT_NE(c0.find("received 120 samples"), std::string::npos) << r.logs();
  // Client 1 reads the job's absolute path itself: same content hash, nothing shipped to it.
  EXPECT_NE(r.clients[1]->out().find("nothing shipped"), std::string::npos) << r.logs();
  EXPECT_TRUE(std::filesystem::is_empty(r.dir.file("client0")));
}

// The rows of `csv` (after its header) in reverse order: the same data in another order.
std::string reversed_rows(const std::string& csv) {
  std::istringstream in(csv);
  std::string header, line;
  std::getline(in, header);
  std::vector<std::string> rows;
  while (std::getline(in, line))
    rows.push_back(line);
  std::string out = header + "\n";
  for (auto it = rows.rbegin(); it != rows.rend(); ++it)
    out += *it + "\n";
  return out;
}

// Issue 18: a client given a row-reversed copy of the CSV trained silently on other rows (the
// server's test rows among them). Every worker now proves which rows it holds before training;
// the job stops with one line naming the worker and its file, and no training happens.
TEST(Data, AWorkerWithARowReversedCopyOfTheDataIsRefusedNamingItsFile) {
  DataRun r;
  const std::string csv = blobs_csv(300, 5);
  write_text(r.dir.file("train.csv"), csv);
  write_text(r.dir.file("reversed.csv"), reversed_rows(csv));
  ASSERT_NE(read_file(r.dir.file("reversed.csv")), csv);
  ASSERT_NO_FATAL_FAILURE(r.start(2,
                                  {"--dataset", "csv:" + r.dir.file("train.csv"), "--label_column",
                                   "label", "--epochs", "1", "--batch_size", "16"},
                                  {{}, {"--dataset", "csv:" + r.dir.file("reversed.csv")}}));
  const auto code = r.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << r.logs();
  EXPECT_NE(*code, 0) << r.logs();
  for (auto& c : r.clients)
    EXPECT_NE(c->wait(30s).value_or(0), 0) << r.logs();
  // Worker ids go by join order: the reversed copy's client learns its id from the server.
  const std::string c1 = r.clients[1]->err();
  const auto at = c1.find("client[");
  ASSERT_NE(at, std::string::npos) << r.logs();
  const std::string blamed = "worker " + c1.substr(at + 7, c1.find(']', at) - at - 7) + " ";
  const std::string honest = blamed == "worker 0 " ? "worker 1 " : "worker 0 ";
  const std::string err = r.server->err();
  EXPECT_EQ(testing::count_lines(err), 1) << err;
  EXPECT_NE(err.find(blamed), std::string::npos) << err;
  EXPECT_NE(err.find("holds other training rows"), std::string::npos) << err;
  EXPECT_NE(err.find("csv:" + r.dir.file("reversed.csv")), std::string::npos) << err;
  const auto summary = nlohmann::json::parse(read_file(r.dir.file("run") + "/summary.json"));
  EXPECT_EQ(summary["status"].get<std::string>().rfind("failed: " + blamed, 0), 0u) << summary;
  EXPECT_EQ(summary["iterations"], 0) << "no training on the wrong rows";
  // The worker that read the server's own file was not blamed.
  EXPECT_EQ(err.find(honest), std::string::npos) << err;
}

// The worker id a client was given (worker ids go by join order), from its log's "client[N]".
std::string worker_id_of(const Process& client) {
  const std::string log = client.out() + client.err();
  const auto at = log.find("client[");
  if (at == std::string::npos) return "?";
  return log.substr(at + 7, log.find(']', at) - at - 7);
}

// --ship_data auto: the worker that holds the server's rows trains on its own copy; one with a
// row-reversed copy and one whose file does not exist are each sent their rows, named in one line
// each by the server and in summary.json shipped_workers, and the run learns.
TEST(Data, ShipDataAutoShipsExactlyToTheWorkersWhoseRowsDifferOrAreMissing) {
  DataRun r;
  const std::string csv = blobs_csv(300, 7);
  write_text(r.dir.file("train.csv"), csv);
  write_text(r.dir.file("reversed.csv"), reversed_rows(csv));
  const std::string reversed = "csv:" + r.dir.file("reversed.csv");
  ASSERT_NO_FATAL_FAILURE(
      r.start(3,
              {"--dataset", "csv:" + r.dir.file("train.csv"), "--label_column", "label",
               "--ship_data", "auto", "--epochs", "2", "--batch_size", "16"},
              {{"--dataset", reversed}, {"--dataset", "csv:/nonexistent.csv"}, {}}));
  auto summary = r.finish();
  EXPECT_EQ(summary["status"], "completed") << r.logs();
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.85) << r.logs();
  const std::string out = r.server->out();
  const std::string rev = worker_id_of(*r.clients[0]), missing = worker_id_of(*r.clients[1]),
                    honest = worker_id_of(*r.clients[2]);
  EXPECT_NE(out.find("worker " + rev + " ("), std::string::npos) << out;
  EXPECT_NE(out.find("cannot train on its own " + reversed + ": its rows differ"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("cannot train on its own csv:/nonexistent.csv"), std::string::npos) << out;
  EXPECT_NE(out.find("worker " + honest + " holds the rows assigned to it; not shipping"),
            std::string::npos)
      << out;
  ASSERT_EQ(summary["shipped_workers"].size(), 2u) << summary;
  std::map<std::string, std::string> shipped;  // worker id -> dataset
  for (const auto& s : summary["shipped_workers"]) {
    shipped[std::to_string(s["worker"].get<int>())] = s["dataset"];
    EXPECT_EQ(s["samples"], 80) << s;  // 300 rows, every 5th held out as the test set, / 3
    EXPECT_GT(s["wire_bytes"].get<double>(), 100) << s;
  }
  EXPECT_EQ(shipped[rev], reversed) << summary;
  EXPECT_EQ(shipped[missing], "csv:/nonexistent.csv") << summary;
  EXPECT_EQ(shipped.count(honest), 0u) << summary;
  EXPECT_NE(r.clients[2]->out().find("nothing shipped"), std::string::npos) << r.logs();
  EXPECT_NE(r.clients[0]->out().find("received 80 samples"), std::string::npos) << r.logs();
}

// --simulate honours --ship_data auto: its workers read the server's own copy, so every
// worker's rows match and none is shipped.
TEST(Data, SimulateTakesShipDataAutoAndShipsNothing) {
  TempDir dir;
  write_text(dir.file("train.csv"), blobs_csv(200, 9));
  auto r =
      testing::run(PSGD_INIT_SERVER,
                   {"--simulate", "--node_count", "2", "--dataset", "csv:" + dir.file("train.csv"),
                    "--label_column", "label", "--ship_data", "auto", "--epochs", "1",
                    "--batch_size", "16", "--output", dir.file("run")},
                   dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto summary = nlohmann::json::parse(read_file(dir.file("run") + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["shipped_workers"], nlohmann::json::array()) << summary;
  EXPECT_EQ(summary["data_bytes"], 0);
}

TEST(Data, Resnet8TrainsOnAGeneratedCifar10Directory) {
  DataRun r;
  const std::string cifar = r.dir.file("cifar");
  std::filesystem::create_directories(cifar);
  std::mt19937 gen(5);
  for (const char* name : {"data_batch_1.bin", "test_batch.bin"}) {
    std::ofstream out(cifar + "/" + name, std::ios::binary);
    for (int i = 0; i < 40; ++i) {
      const int label = i % 10;
      out.put(static_cast<char>(label));
      for (int p = 0; p < 3072; ++p) {
        // The class shows as the brightness of one channel; the rest is noise.
        const int base = (p / 1024 == label % 3) ? 40 + 20 * label : 0;
        out.put(static_cast<char>(base + static_cast<int>(gen() % 32)));
      }
    }
  }
  ASSERT_NO_FATAL_FAILURE(r.start(2, {"--dataset", "cifar10:" + cifar, "--model", "resnet8",
                                      "--epochs", "2", "--batch_size", "8", "--ship_data"}));
  auto summary = r.finish();
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["model"], "resnet8");
  EXPECT_EQ(summary["iterations"], 6);  // ceil(40 / (2 * 8)) x 2
  EXPECT_NE(r.server->out().find("cifar10 train: 40 samples of 3x32x32, 10 classes"),
            std::string::npos);
}

TEST(Data, ReconstructionRunReportsLossAndNoAccuracy) {
  DataRun r;
  write_text(r.dir.file("train.csv"), blobs_csv(200, 4));
  ASSERT_NO_FATAL_FAILURE(
      r.start(1, {"--dataset", "csv:" + r.dir.file("train.csv"), "--target", "xx", "--model",
                  "autoencoder", "--label_column", "none", "--normalize", "zscore", "--epochs", "4",
                  "--batch_size", "16", "--learn_rate", "0.02"}));
  auto summary = r.finish();
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_TRUE(summary["final_test_accuracy"].is_null());
  std::istringstream metrics(read_file(r.dir.file("run") + "/metrics.csv"));
  std::string header, first, line, last;
  std::getline(metrics, header);
  std::getline(metrics, first);
  while (std::getline(metrics, line))
    last = line;
  auto loss = [](const std::string& row) {  // test_loss is the 6th column
    std::istringstream in(row);
    std::string cell;
    for (int i = 0; i < 6; ++i)
      std::getline(in, cell, ',');
    return std::stod(cell);
  };
  EXPECT_LT(loss(last), 0.7 * loss(first)) << read_file(r.dir.file("run") + "/metrics.csv");
  EXPECT_NE(first.find(",nan,"), std::string::npos) << first;
}

struct BadData {
  std::string name;
  std::vector<std::string> files;  // name=content pairs written first
  std::vector<std::string> args;
  std::string expect;
};
void PrintTo(const BadData& c, std::ostream* os) {
  *os << c.name;
}

class BadDataCase : public ::testing::TestWithParam<BadData> {};

TEST_P(BadDataCase, OneClearLineAndExit2BeforeTraining) {
  TempDir dir;
  const BadData& c = GetParam();
  for (const auto& f : c.files) {
    const auto eq = f.find('=');
    write_text(dir.file(f.substr(0, eq)), f.substr(eq + 1));
  }
  std::vector<std::string> args{"--node_count", "1", "--working_ports", "0", "--output",
                                dir.file("run")};
  for (auto a : c.args) {
    for (std::size_t p; (p = a.find("DIR/")) != std::string::npos;)
      a.replace(p, 4, dir.file(""));
    args.push_back(a);
  }
  auto r = testing::run(PSGD_INIT_SERVER, args, dir, 30);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
  EXPECT_EQ(testing::count_lines(r.err), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run"))) << "no run directory for a bad job";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadDataCase,
    ::testing::Values(BadData{"missing", {}, {"--dataset", "csv:DIR/nope.csv"}, "does not exist"},
                      BadData{"lengths",
                              {"x.csv=1,2\n3,4\n5,6\n", "y.csv=0\n1\n"},
                              {"--dataset", "csv:DIR/x.csv,DIR/y.csv"},
                              "has 3 rows but"},
                      BadData{"cell",
                              {"a.csv=1,2,0\n3,oops,1\n"},
                              {"--dataset", "csv:DIR/a.csv"},
                              "line 2, column 2: 'oops' is not a number"},
                      BadData{"label",
                              {"a.csv=1,2,0\n3,4,-2\n"},
                              {"--dataset", "csv:DIR/a.csv"},
                              "label -2 is out of range"},
                      BadData{"shape",
                              {"a.csv=1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,0,1\n"},
                              {"--dataset", "csv:DIR/a.csv", "--model", "cnn"},
                              "model cnn needs images of at least 4x4, got 1x2"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace psgd
