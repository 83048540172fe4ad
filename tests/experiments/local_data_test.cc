// --local_data's socket-free parts (experiments/local_data.h): the salted test-row hashes find
// exactly the rows a worker shares with the server's test set, whatever the salt, and nothing
// else; a report is checked against the model's shape and classes (as many features in another
// layout may train, and take the model's shape); the classes present read well; a worker's own file
// is read whole (no test rows held out of it).
#include "experiments/local_data.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "nn/data_source.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

nn::Dataset rows(std::vector<std::vector<float>> values, std::vector<std::int64_t> labels) {
  nn::Dataset d;
  d.channels = 1;
  d.height = 1;
  d.width = static_cast<std::int64_t>(values.front().size());
  for (const auto& v : values)
    d.images.insert(d.images.end(), v.begin(), v.end());
  d.labels = std::move(labels);
  d.num_classes = 3;
  return d;
}

TEST(LocalData, SaltedHashesCountExactlyTheSharedRows) {
  const nn::Dataset test = rows({{0.1f, 0.2f}, {0.3f, 0.4f}, {0.5f, 0.6f}}, {0, 1, 2});
  // Two rows of the test set (one as a CSV would print 1/255-like values, to 6 digits), one not.
  const nn::Dataset own =
      rows({{0.3f, 0.4f}, {0.7f, 0.8f}, {0.500001f, 0.6f}, {0.3f, 0.40011f}}, {1, 0, 2, 1});
  for (const std::string& salt : {make_salt(), make_salt()}) {
    const auto hashes = salted_row_hashes(test, salt);
    EXPECT_EQ(count_test_rows(own, salt, hashes), 2);
    EXPECT_EQ(count_test_rows(test, salt, hashes), 3);
    EXPECT_EQ(count_test_rows(own, salt, {}), 0);
  }
  // Another salt gives other hashes: a hash list says nothing without its salt.
  EXPECT_NE(salted_row_hashes(test, "a"), salted_row_hashes(test, "b"));
  EXPECT_NE(make_salt(), make_salt());
}

TEST(LocalData, AReportIsCheckedAgainstTheModelsShapeAndClasses) {
  nn::Dataset server = rows({{0, 0}}, {0});
  server.num_classes = 10;
  LocalData ok{.samples = 5,
               .label_histogram = {0, 2, 3},
               .shape = {1, 1, 2, 0},
               .dataset = "csv:/data/mine.csv"};
  EXPECT_EQ(local_data_refusal(ok, server, 1, "node2"), "");
  LocalData shape = ok;
  shape.shape = {1, 28, 28, 0};
  EXPECT_EQ(local_data_refusal(shape, server, 1, "node2"),
            "worker 1 (node2): its own file csv:/data/mine.csv holds samples of 1x28x28 (784 "
            "features), but the job's model takes 1x1x2 (2 features) (the server's --dataset); "
            "give every worker a file with as many features per sample");
  // As many features in another layout (a CSV's flat rows beside an image server) may train;
  // regression targets must agree too.
  LocalData flat = ok;
  flat.shape = {2, 1, 1, 0};
  EXPECT_EQ(local_data_refusal(flat, server, 1, "node2"), "");
  LocalData targets = ok;
  targets.shape = {1, 1, 2, 1};
  EXPECT_NE(local_data_refusal(targets, server, 1, "node2").find("1x1x2 (2 features, 1 targets)"),
            std::string::npos);
  LocalData malformed = ok;
  malformed.shape = {1, 2};
  EXPECT_NE(local_data_refusal(malformed, server, 1, "node2").find("samples of malformed"),
            std::string::npos);
  LocalData classes = ok;
  classes.label_histogram = std::vector<std::int64_t>(12, 0);
  classes.label_histogram[11] = 5;
  EXPECT_NE(local_data_refusal(classes, server, 1, "node2").find("labels up to 11"),
            std::string::npos);
  LocalData leak = ok;
  leak.test_rows = 4;
  EXPECT_NE(local_data_refusal(leak, server, 0, "a").find("holds 4 of the server's test rows"),
            std::string::npos);
  LocalData lying = ok;
  lying.samples = 6;
  EXPECT_NE(local_data_refusal(lying, server, 0, "a"), "");
  LocalData empty = ok;
  empty.samples = 0;
  empty.label_histogram = {};
  EXPECT_NE(local_data_refusal(empty, server, 0, "a").find("no training rows"), std::string::npos);
}

// A worker's flat CSV rows beside an image server take the model's C x H x W, values in order;
// rows of another feature count are left as they were, with the reason.
TEST(LocalData, RowsOfAsManyFeaturesTakeTheModelsShape) {
  nn::Dataset d = rows({{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}}, {0, 1});
  const std::vector<float> values = d.images;
  EXPECT_EQ(take_model_shape(d, {1, 1, 6, 0}), "");
  EXPECT_EQ(model_shape(d), (std::vector<std::int64_t>{1, 1, 6, 0}));
  EXPECT_EQ(take_model_shape(d, {3, 1, 2, 0}), "");
  EXPECT_EQ(model_shape(d), (std::vector<std::int64_t>{3, 1, 2, 0}));
  EXPECT_EQ(d.images, values);
  EXPECT_EQ(d.sample_numel(), 6);
  EXPECT_EQ(take_model_shape(d, {1, 28, 28, 0}),
            "its rows of 3x1x2 (6 features) cannot take the model's shape 1x28x28 (784 features)");
  EXPECT_EQ(take_model_shape(d, {}),
            "its rows of 3x1x2 (6 features) cannot take the model's "
            "shape malformed");
  EXPECT_EQ(model_shape(d), (std::vector<std::int64_t>{3, 1, 2, 0}));
}

// A label-skewed site's file holds a few of the model's classes (here 7-9 of 10, 120 rows): a
// worker reads it (the server checks its labels against the model's classes), where the same
// file as a job's --dataset is refused as labels that are not class indices.
TEST(LocalData, ALabelSkewedFileWithFewOfTheClassesIsRead) {
  testing::TempDir tmp;
  {
    std::ofstream out(tmp.file("site.csv"));
    out << "a,b,label\n";
    for (int i = 0; i < 120; ++i)
      out << i << "," << 0.5 * i << "," << 7 + i % 3 << "\n";
  }
  const std::string spec_text = "csv:" + tmp.file("site.csv");
  JobSpec spec;
  spec.local_data = true;
  const LocalFile f = read_local_file(spec, Job{}, spec_text);
  EXPECT_EQ(f.report.samples, 120);
  EXPECT_EQ(f.report.label_histogram, (std::vector<std::int64_t>{0, 0, 0, 0, 0, 0, 0, 40, 40, 40}));
  EXPECT_THROW(nn::load_dataset(spec_text), ConfigError);
}

TEST(LocalData, ClassesPresentReadAsRanges) {
  EXPECT_EQ(classes_present({3, 1, 2, 0, 0}), "classes 0-2");
  EXPECT_EQ(classes_present({0, 0, 0, 0, 0, 1, 1, 1, 1, 1}), "classes 5-9");
  EXPECT_EQ(classes_present({1, 0, 0, 4, 0, 2, 2}), "classes 0, 3, 5-6");
  EXPECT_EQ(classes_present({0, 7}), "class 1");
  EXPECT_EQ(classes_present({0, 0}), "no class");
}

TEST(LocalData, AWorkersFileIsReadWholeAndCounted) {
  testing::TempDir tmp;
  {
    std::ofstream out(tmp.file("mine.csv"));
    out << "a,b,label\n";
    for (int i = 0; i < 10; ++i)
      out << i << "," << 2 * i << "," << (i < 7 ? 0 : 2) << "\n";
  }
  JobSpec spec;
  spec.local_data = true;
  Job job;
  job.test_salt = "salt";
  job.test_hashes = salted_row_hashes(rows({{3, 6}, {9, 9}}, {0, 0}), "salt");
  const LocalFile f = read_local_file(spec, job, "csv:" + tmp.file("mine.csv"));
  // A file without a test set: every row trains (none held out as a test set).
  EXPECT_EQ(f.train.size(), 10u);
  EXPECT_EQ(f.report.samples, 10);
  EXPECT_EQ(f.report.label_histogram, (std::vector<std::int64_t>{7, 0, 3}));
  EXPECT_EQ(f.report.shape, (std::vector<std::int64_t>{1, 1, 2, 0}));
  EXPECT_EQ(f.report.test_rows, 1);  // the row 3,6
  spec.train_samples = 4;
  EXPECT_EQ(read_local_file(spec, job, "csv:" + tmp.file("mine.csv")).report.samples, 4);
  try {
    read_local_file(spec, job, "csv:" + tmp.file("missing.csv"));
    FAIL() << "a missing file was read";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read this worker's own file csv:" +
                                         tmp.file("missing.csv")),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace psgd
