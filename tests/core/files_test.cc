// core/files.h: a file is written whole or not at all, and an appended record is whole or absent,
// also when the write fails part way. The failure is made with RLIMIT_FSIZE (writes past the limit
// fail with EFBIG, as they fail with ENOSPC on a full disk) and /dev/full; the full disk itself is
// tested against real processes (tests/integration/robust_test.cc).
#include "core/files.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"

namespace psgd {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("psgd-files-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  }
  void TearDown() override {
    setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
    fs::remove_all(dir_);
  }
  // Writes past `bytes` of any file fail from now on (until TearDown).
  void limit_file_size(rlim_t bytes) {
    rlimit r = saved_;
    r.rlim_cur = bytes;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &r), 0);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

TEST_F(Files, AnAtomicWriteReplacesTheFileWhole) {
  write_file_atomic(path("a.json"), std::string_view("first\n"));
  write_file_atomic(path("a.json"), std::string_view("second\n"));
  EXPECT_EQ(slurp(path("a.json")), "second\n");
  EXPECT_FALSE(fs::exists(path("a.json.tmp")));
}

TEST_F(Files, AFailedAtomicWriteKeepsThePreviousFileAndLeavesNoTemporary) {
  write_file_atomic(path("model.pt"), std::string(100, 'a'));
  limit_file_size(1000);
  try {
    write_file_atomic(path("model.pt"), std::string(5000, 'b'));
    FAIL() << "a write past the limit succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + path("model.pt") + ": File too large");
  }
  EXPECT_EQ(slurp(path("model.pt")), std::string(100, 'a'));
  EXPECT_FALSE(fs::exists(path("model.pt.tmp")));
}

TEST_F(Files, AnAtomicWriteIntoAMissingDirectorySaysWhichFile) {
  try {
    write_file_atomic(path("no/such/dir/summary.json"), std::string_view("{}"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write " + path("no/such/dir/summary.json") +
                                         ": No such file or directory"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(Files, AppendedRecordsAreWholeEvenWhenTheDiskFillsUpMidRecord) {
  AppendFile rows(path("metrics.csv"));
  rows.append("epoch,loss\n");
  for (int i = 0; i < 10; ++i)
    rows.append(std::to_string(i) + ",0.5\n");
  const std::string before = slurp(path("metrics.csv"));
  limit_file_size(before.size() + 10);  // the next row starts but does not fit
  EXPECT_THROW(rows.append("10," + std::string(40, '7') + "\n"), IoError);
  EXPECT_EQ(slurp(path("metrics.csv")), before);  // cut back to the last whole row
  // Space again: appending goes on after the last whole row.
  setrlimit(RLIMIT_FSIZE, &saved_);
  rows.append("10,0.25\n");
  rows.sync();
  EXPECT_EQ(slurp(path("metrics.csv")), before + "10,0.25\n");
}

TEST_F(Files, AFullDeviceIsAnIoErrorNamingTheFileAndTheReason) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this machine";
  AppendFile full("/dev/full");
  try {
    full.append("a row\n");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write /dev/full: No space left on device");
  }
}

}  // namespace
}  // namespace psgd
