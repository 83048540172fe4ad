// Class counts (issue 21): labels are class indices 0..K-1 and the model gets K = largest label + 1
// outputs. One stray label far above the rest (255 in 10-class data) would silently make a
// 256-class model: with samples enough to fill the classes it is refused in one line naming the
// label; a few empty classes (1-based labels, a class absent from a small file) are said in a
// note, and the model keeps its K outputs.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/error.h"
#include "nn/data_source.h"
#include "tests/nn/test_dir.h"

namespace psgd::nn {
namespace {

using testing::TempDir;

// `rows` rows "feature,label" with labels 0..classes-1 in turn, then the extra labels.
std::string csv(int rows, int classes, const std::vector<int>& extra = {}) {
  std::string text;
  for (int i = 0; i < rows; ++i)
    text += std::to_string(i) + "," + std::to_string(i % classes) + "\n";
  for (int label : extra)
    text += "0.5," + std::to_string(label) + "\n";
  return text;
}

TEST(Labels, OneStrayLabelFarAboveTheRestIsRefusedInOneLine) {
  TempDir dir;
  std::ofstream(dir.file("data.csv")) << csv(3000, 10, {255});
  try {
    load_dataset("csv:" + dir.file("data.csv"));
    FAIL() << "a 256-class model was made of 10-class data";
  } catch (const ConfigError& e) {
    const std::string why = e.what();
    EXPECT_NE(why.find("labels go up to 255, so the model would have 256 classes, but only 11 of "
                       "them have samples"),
              std::string::npos)
        << why;
    EXPECT_NE(why.find("--label_column"), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  }
}

TEST(Labels, AFewEmptyClassesAreSaidInANoteAndKeptAsOutputs) {
  TempDir dir;
  // 1-based labels 1..5: class 0 has no sample.
  std::string text;
  for (int i = 0; i < 100; ++i)
    text += std::to_string(i) + "," + std::to_string(1 + i % 5) + "\n";
  std::ofstream(dir.file("one_based.csv")) << text;
  const DataSplit s = load_dataset("csv:" + dir.file("one_based.csv"));
  EXPECT_EQ(s.train.num_classes, 6);
  ASSERT_EQ(s.notes.size(), 1u);
  EXPECT_NE(s.notes[0].find("1 of the 6 classes 0..5 have no sample (0)"), std::string::npos)
      << s.notes[0];
  // Complete data: no note.
  std::ofstream(dir.file("full.csv")) << csv(100, 5);
  EXPECT_TRUE(load_dataset("csv:" + dir.file("full.csv")).notes.empty());
}

TEST(Labels, SmallDataWithManyEmptyClassesIsOnlyNoted) {
  // 8 samples cannot fill 10 classes: a sample of a larger dataset, not wrong labels.
  TempDir dir;
  std::ofstream(dir.file("tiny.csv")) << "1,0\n2,9\n3,0\n4,9\n5,0\n6,9\n7,0\n8,9\n";
  const DataSplit s = load_dataset("csv:" + dir.file("tiny.csv"));
  EXPECT_EQ(s.train.num_classes, 10);
  ASSERT_EQ(s.notes.size(), 1u);
  EXPECT_NE(s.notes[0].find("8 of the 10 classes"), std::string::npos) << s.notes[0];
}

}  // namespace
}  // namespace psgd::nn
