// Readers (CIFAR-10, CSV, npy, npz), the source dispatcher, normalisers and data packs, on small
// files each test writes itself.
// (Over 400 lines: one test file per reader family keeps each format's cases together.)
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/cifar.h"
#include "nn/csv.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"
#include "nn/normalize.h"
#include "nn/npy.h"
#include "tests/nn/expect_error.h"
#include "tests/nn/npy_bytes.h"
#include "tests/nn/test_dir.h"

namespace psgd::nn {
namespace {

using testing::expect_config_error;
using testing::TempDir;
using Bytes = std::vector<unsigned char>;

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
void write_text(const std::string& path, const std::string& s) {
  std::ofstream out(path);
  out << s;
}

// --- CIFAR-10 ---------------------------------------------------------------------------------

Bytes cifar_records(int n, int label_offset) {
  Bytes b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<unsigned char>((i + label_offset) % 10));
    for (int p = 0; p < 3072; ++p)
      b.push_back(static_cast<unsigned char>((i * 7 + p) % 256));
  }
  return b;
}

TEST(Cifar, ReadsBatchesOfADirectory) {
  TempDir dir;
  write_bytes(dir.file("data_batch_1.bin"), cifar_records(3, 0));
  write_bytes(dir.file("data_batch_2.bin"), cifar_records(2, 3));
  write_bytes(dir.file("test_batch.bin"), cifar_records(4, 1));
  const DataSplit s = load_dataset("cifar10:" + dir.path().string());
  EXPECT_EQ(s.train.size(), 5u);
  EXPECT_EQ(s.test.size(), 4u);
  EXPECT_EQ(s.train.channels, 3);
  EXPECT_EQ(s.train.height, 32);
  EXPECT_EQ(s.train.num_classes, 10);
  EXPECT_EQ(s.train.labels[3], 3);
  // Record 1 of batch 1: pixel p (channel-major) is (7 + p) % 256.
  EXPECT_FLOAT_EQ(s.train.images[3072 + 1024 + 5], static_cast<float>((7 + 1029) % 256) / 255);
  EXPECT_EQ(describe(s.train), "cifar10 train: 5 samples of 3x32x32, 10 classes");
  EXPECT_EQ(load_dataset("cifar10:" + dir.path().string(), 4, 2).train.size(), 4u);
}

TEST(Cifar, Errors) {
  TempDir dir;
  expect_config_error([&] { load_dataset("cifar10:" + dir.file("nope")); }, "does not exist");
  expect_config_error([&] { load_dataset("cifar10:" + dir.path().string()); }, "data_batch_1.bin");
  Bytes bad = cifar_records(2, 0);
  write_bytes(dir.file("test_batch.bin"), bad);
  bad.pop_back();
  write_bytes(dir.file("data_batch_1.bin"), bad);
  expect_config_error([&] { load_dataset("cifar10:" + dir.path().string()); },
                      "multiple of the 3073");
  bad = cifar_records(2, 0);
  bad[3073] = 12;
  write_bytes(dir.file("data_batch_1.bin"), bad);
  expect_config_error([&] { load_dataset("cifar10:" + dir.path().string()); }, "label 12");
}

// --- CSV ----------------------------------------------------------------------------------------

TEST(Csv, WithHeaderAndLabelColumnByName) {
  TempDir dir;
  write_text(dir.file("a.csv"), "f1, label ,f2\n1.5,0,2\n-3,2,4e1\n\n5,1,6\n");
  const Dataset d = read_csv(dir.file("a.csv"), {.label_column = "label"});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d.width, 2);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.labels, (std::vector<std::int64_t>{0, 2, 1}));
  EXPECT_EQ(d.images, (std::vector<float>{1.5f, 2, -3, 40, 5, 6}));
  EXPECT_EQ(read_csv(dir.file("a.csv"), {.label_column = "1"}).labels, d.labels);
  // The same file as a spreadsheet's "CSV UTF-8" export writes it: a byte-order mark first.
  write_text(dir.file("bom.csv"),
             "\xEF\xBB\xBF"
             "label,f1\n0,1.5\n2,-3\n1,5\n");
  const Dataset bom = read_csv(dir.file("bom.csv"), {.label_column = "label"});
  EXPECT_EQ(bom.labels, d.labels) << "the first column found by its name behind the mark";
  EXPECT_EQ(bom.images, (std::vector<float>{1.5f, -3, 5}));
  write_text(dir.file("bom_no_header.csv"),
             "\xEF\xBB\xBF"
             "1,2,1\n3,4,0\n");
  EXPECT_EQ(read_csv(dir.file("bom_no_header.csv")).labels, (std::vector<std::int64_t>{1, 0}));
}

TEST(Csv, WithoutHeaderLabelLastAndPairOfFiles) {
  TempDir dir;
  write_text(dir.file("b.csv"), "1,2,1\n3,4,0\r\n");
  const Dataset d = read_csv(dir.file("b.csv"));
  EXPECT_EQ(d.labels, (std::vector<std::int64_t>{1, 0}));
  EXPECT_EQ(d.images, (std::vector<float>{1, 2, 3, 4}));
  write_text(dir.file("x.csv"), "a,b\n1,2\n3,4\n");
  write_text(dir.file("y.csv"), "y\n1\n0\n");
  const Dataset p = read_csv_pair(dir.file("x.csv"), dir.file("y.csv"));
  EXPECT_EQ(p.labels, d.labels);
  EXPECT_EQ(p.images, d.images);
  const Dataset none = read_csv(dir.file("b.csv"), {.label_column = "none"});
  EXPECT_EQ(none.width, 3);
}

TEST(Csv, ErrorsNameFileLineAndColumn) {
  TempDir dir;
  write_text(dir.file("bad.csv"), "f1,f2,label\n1,2,0\n3,x7,1\n");
  expect_config_error([&] { read_csv(dir.file("bad.csv")); },
                      "bad.csv: line 3, column 2 ('f2'): 'x7'");
  write_text(dir.file("ragged.csv"), "1,2,0\n3,1\n");
  expect_config_error([&] { read_csv(dir.file("ragged.csv")); }, "line 2 has 2 columns");
  write_text(dir.file("neg.csv"), "1,2,0\n3,1,-1\n");
  expect_config_error([&] { read_csv(dir.file("neg.csv")); }, "label -1 is out of range");
  write_text(dir.file("huge.csv"), "f1,f2,label\n1,2,0\n3,1e40,1\n");
  expect_config_error([&] { read_csv(dir.file("huge.csv")); },
                      "huge.csv: line 3, column 2 ('f2'): '1e40' is too large for a 32-bit float");
  write_text(dir.file("frac.csv"), "1,2,0.5\n");
  expect_config_error([&] { read_csv(dir.file("frac.csv")); }, "label 0.5 is out of range");
  write_text(dir.file("x.csv"), "1,2\n3,4\n5,6\n");
  write_text(dir.file("y.csv"), "1\n0\n");
  expect_config_error([&] { read_csv_pair(dir.file("x.csv"), dir.file("y.csv")); },
                      "has 3 rows but");
  expect_config_error([&] { load_dataset("csv:" + dir.file("missing.csv")); }, "does not exist");
  expect_config_error([&] { read_csv(dir.file("x.csv"), {.label_column = "nope"}); },
                      "no such column (it has no header");
  write_text(dir.file("named.csv"), "f1,f2,label\n1,2,0\n");
  expect_config_error([&] { read_csv(dir.file("named.csv"), {.label_column = "lable"}); },
                      "no such column (its columns: 'f1', 'f2', 'label'; or give a 0-based index)");
}

TEST(Csv, SourceHoldsOutEveryFifthRowWithoutATestSet) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 10; ++i)
    text += std::to_string(i) + "," + std::to_string(i % 2) + "\n";
  write_text(dir.file("all.csv"), text);
  const DataSplit s = load_dataset("csv:" + dir.file("all.csv"));
  EXPECT_EQ(s.train.size(), 8u);
  ASSERT_EQ(s.test.size(), 2u);
  EXPECT_EQ(s.test.images, (std::vector<float>{4, 9}));
  EXPECT_EQ(s.test.num_classes, 2);
  write_text(dir.file("test.csv"), "7,1\n");
  const DataSplit k =
      load_dataset("csv:train=" + dir.file("all.csv") + ",test=" + dir.file("test.csv"));
  EXPECT_EQ(k.train.size(), 10u);
  EXPECT_EQ(k.test.size(), 1u);
  write_text(dir.file("wide.csv"), "1,2,3,0\n");
  expect_config_error(
      [&] { load_dataset("csv:train=" + dir.file("all.csv") + ",test=" + dir.file("wide.csv")); },
      "training samples are 1x1x1 but test samples 1x1x3");
}

// --- NumPy ----------------------------------------------------------------------------------

Bytes npy(const std::string& descr, const std::string& shape, const Bytes& data,
          bool fortran = false) {
  return testing::npy_bytes(descr, shape, data, fortran);
}

template <class T>
Bytes raw(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(Npy, ReadsDtypesAndShapes) {
  TempDir dir;
  write_bytes(dir.file("x.npy"), npy("<f4", "(5, 2)", raw<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 0})));
  write_bytes(dir.file("y.npy"), npy("<i8", "(5,)", raw<std::int64_t>({0, 1, 1, 0, 2})));
  const DataSplit s = load_dataset("npy:" + dir.file("x.npy") + "," + dir.file("y.npy"));
  EXPECT_EQ(s.train.size(), 4u);
  EXPECT_EQ(s.test.labels, (std::vector<std::int64_t>{2}));  // the 5th row
  EXPECT_EQ(s.train.num_classes, 3);
  write_bytes(dir.file("img.npy"), npy("|u1", "(2, 1, 2, 2)", Bytes{0, 255, 51, 0, 1, 2, 3, 4}));
  write_bytes(dir.file("lab.npy"), npy("<i4", "(2, 1)", raw<std::int32_t>({4, 2})));
  const Dataset d = dataset_from_arrays(read_npy(dir.file("img.npy")),
                                        read_npy(dir.file("lab.npy")), "img", "lab");
  EXPECT_EQ(d.channels, 1);
  EXPECT_EQ(d.height, 2);
  EXPECT_EQ(d.num_classes, 5);
  EXPECT_FLOAT_EQ(d.images[1], 1.0f);
  EXPECT_FLOAT_EQ(d.images[2], 0.2f);
  const NpyArray f8 = parse_npy(npy("<f8", "(2,)", raw<double>({0.5, -1})), "f8");
  EXPECT_EQ(f8.shape, (std::vector<std::int64_t>{2}));
}

TEST(Npy, Errors) {
  TempDir dir;
  const Bytes x = npy("<f4", "(3, 2)", raw<float>({1, 2, 3, 4, 5, 6}));
  expect_config_error([&] { parse_npy(Bytes(x.begin(), x.end() - 1), "t.npy"); },
                      "t.npy is truncated");
  expect_config_error([&] { parse_npy(Bytes(x.begin(), x.begin() + 30), "t.npy"); }, "truncated");
  expect_config_error([&] { parse_npy(Bytes{1, 2, 3}, "t.npy"); }, "not a .npy file");
  expect_config_error([&] { parse_npy(npy("<f4", "(1,)", raw<float>({1}), true), "t.npy"); },
                      "Fortran-ordered");
  expect_config_error([&] { parse_npy(npy(">f4", "(1,)", raw<float>({1})), "t.npy"); },
                      "dtype '>f4'");
  expect_config_error([&] { parse_npy(npy("<c8", "(1,)", Bytes(8)), "t.npy"); }, "not supported");
  const NpyArray xs = parse_npy(x, "x.npy");
  // Each error names the file at fault: the labels' problems name the label file.
  const auto labels = [&](const char* dtype, const char* shape, const Bytes& values) {
    return parse_npy(npy(dtype, shape, values), "y.npy");
  };
  expect_config_error(
      [&] {
        dataset_from_arrays(xs, labels("<i8", "(2,)", raw<std::int64_t>({0, 1})), "x.npy", "y.npy");
      },
      "x.npy has 3 feature rows but y.npy has 2 labels");
  expect_config_error(
      [&] {
        dataset_from_arrays(xs, labels("<i8", "(3,)", raw<std::int64_t>({0, -1, 1})), "x.npy",
                            "y.npy");
      },
      "y.npy: label -1 of sample 1 is out of range");
  expect_config_error(
      [&] {
        dataset_from_arrays(xs, labels("<f4", "(3,)", raw<float>({0, 1, 1})), "x.npy", "y.npy");
      },
      "y.npy: labels must have an integer dtype");
  expect_config_error(
      [&] {
        dataset_from_arrays(xs, labels("<i8", "(3, 2)", raw<std::int64_t>({0, 1, 1, 0, 1, 0})),
                            "x.npy", "y.npy");
      },
      "y.npy: labels must have shape (N) or (N, 1), got (3, 2)");
}

// A zip archive as Python's zipfile writes it (local headers, central directory, end record);
// members stored or raw-deflated with zlib.
Bytes zip(const std::vector<std::pair<std::string, Bytes>>& members, bool deflated) {
  Bytes out, central;
  auto u16 = [](Bytes& b, std::uint32_t v) {
    b.push_back(v & 0xff);
    b.push_back((v >> 8) & 0xff);
  };
  auto u32 = [&](Bytes& b, std::uint32_t v) {
    u16(b, v & 0xffff);
    u16(b, v >> 16);
  };
  for (const auto& [name, data] : members) {
    Bytes body = data;
    if (deflated) {
      z_stream s{};
      deflateInit2(&s, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
      body.resize(deflateBound(&s, data.size()));
      s.next_in = const_cast<unsigned char*>(data.data());
      s.avail_in = static_cast<uInt>(data.size());
      s.next_out = body.data();
      s.avail_out = static_cast<uInt>(body.size());
      EXPECT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
      body.resize(s.total_out);
      deflateEnd(&s);
    }
    const auto crc =
        static_cast<std::uint32_t>(crc32(0, data.data(), static_cast<uInt>(data.size())));
    const auto offset = static_cast<std::uint32_t>(out.size());
    u32(out, 0x04034b50);
    u16(out, 20), u16(out, 0), u16(out, deflated ? 8 : 0), u16(out, 0), u16(out, 0);
    u32(out, crc), u32(out, static_cast<std::uint32_t>(body.size()));
    u32(out, static_cast<std::uint32_t>(data.size()));
    u16(out, static_cast<std::uint32_t>(name.size())), u16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), body.begin(), body.end());
    u32(central, 0x02014b50);
    u16(central, 20), u16(central, 20), u16(central, 0), u16(central, deflated ? 8 : 0);
    u16(central, 0), u16(central, 0);
    u32(central, crc), u32(central, static_cast<std::uint32_t>(body.size()));
    u32(central, static_cast<std::uint32_t>(data.size()));
    u16(central, static_cast<std::uint32_t>(name.size())), u16(central, 0), u16(central, 0);
    u16(central, 0), u16(central, 0), u32(central, 0), u32(central, offset);
    central.insert(central.end(), name.begin(), name.end());
  }
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out.insert(out.end(), central.begin(), central.end());
  u32(out, 0x06054b50);
  u16(out, 0), u16(out, 0);
  u16(out, static_cast<std::uint32_t>(members.size()));
  u16(out, static_cast<std::uint32_t>(members.size()));
  u32(out, static_cast<std::uint32_t>(central.size())), u32(out, cd_offset), u16(out, 0);
  return out;
}

std::vector<std::pair<std::string, Bytes>> npz_members(int n) {
  std::vector<float> x;
  std::vector<std::int64_t> y;
  for (int i = 0; i < n; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(-i));
    y.push_back(i % 3);
  }
  return {{"x.npy", npy("<f4", "(" + std::to_string(n) + ", 2)", raw(x))},
          {"y.npy", npy("<i8", "(" + std::to_string(n) + ",)", raw(y))},
          {"x_test.npy", npy("<f4", "(1, 2)", raw<float>({7, 8}))},
          {"y_test.npy", npy("<i8", "(1,)", raw<std::int64_t>({1}))}};
}

TEST(Npz, StoredAndDeflatedMembers) {
  TempDir dir;
  for (bool deflated : {false, true}) {
    write_bytes(dir.file("d.npz"), zip(npz_members(50), deflated));
    const DataSplit s = load_dataset("npz:" + dir.file("d.npz"));
    EXPECT_EQ(s.train.size(), 50u);
    EXPECT_EQ(s.test.size(), 1u);
    EXPECT_EQ(s.train.num_classes, 3);
    EXPECT_EQ(s.train.images[2 * 49 + 1], -49.0f);
    EXPECT_EQ(s.test.images, (std::vector<float>{7, 8}));
  }
}

TEST(Npz, CorruptArchivesAreRefused) {
  TempDir dir;
  const Bytes good = zip(npz_members(5), true);
  auto load_bytes = [&](const Bytes& b) {
    write_bytes(dir.file("c.npz"), b);
    load_dataset("npz:" + dir.file("c.npz"));
  };
  expect_config_error([&] { load_bytes(Bytes(good.begin(), good.end() - 30)); }, "end-of-central");
  Bytes flipped = good;
  flipped[60] ^= 0xff;  // inside the first member's deflate stream
  expect_config_error([&] { load_bytes(flipped); }, "member x.npy");
  Bytes encrypted = good;
  std::uint32_t cd = 0;  // the central directory's offset, from the end record
  std::memcpy(&cd, &good[good.size() - 6], 4);
  encrypted[cd + 8] |= 1;
  expect_config_error([&] { load_bytes(encrypted); }, "encrypted");
  Bytes zip64 = good;
  std::memset(&zip64[cd + 20], 0xff, 4);
  expect_config_error([&] { load_bytes(zip64); }, "zip64");
  Bytes bounds = good;
  bounds[cd + 20] = 0xfe, bounds[cd + 21] = 0xff;  // compressed size beyond the file
  expect_config_error([&] { load_bytes(bounds); }, "out of bounds");
  write_bytes(dir.file("nox.npz"), zip({npz_members(5)[1]}, false));
  expect_config_error([&] { load_dataset("npz:" + dir.file("nox.npz")); },
                      "expected arrays x and y");
}

// --- normalisers, hold-out, packs -----------------------------------------------------------

Dataset table(const std::vector<float>& values, std::int64_t features) {
  Dataset d;
  d.width = features;
  d.height = 1;
  d.images = values;
  d.labels.assign(values.size() / static_cast<std::size_t>(features), 0);
  d.num_classes = 1;
  return d;
}

TEST(Normalize, StatisticsComeFromTheTrainingRowsOnly) {
  // Rows 0, 1 train; row 2 (an outlier) is validation or test.
  Dataset d = table({0, 10, 2, 30, 100, -50}, 2);
  const std::vector<std::int64_t> rows{0, 1};
  const Normalizer z = fit_normalizer("zscore", d, rows);
  EXPECT_FLOAT_EQ(z.shift[0], 1.0f);
  EXPECT_FLOAT_EQ(z.shift[1], 20.0f);
  EXPECT_FLOAT_EQ(z.scale[0], 1.0f);
  EXPECT_FLOAT_EQ(z.scale[1], 0.1f);
  const Normalizer m = fit_normalizer("minmax", d, rows);
  EXPECT_FLOAT_EQ(m.shift[1], 10.0f);
  EXPECT_FLOAT_EQ(m.scale[1], 0.05f);
  const Normalizer s = fit_normalizer("scale", d, rows);
  EXPECT_FLOAT_EQ(s.scale[0], 1.0f / 30);
  Dataset test = table({100, -50}, 2);
  m.apply(test);
  EXPECT_FLOAT_EQ(test.images[0], 50.0f);  // not clipped: the test set did not shape the stats
  EXPECT_FLOAT_EQ(test.images[1], -3.0f);
  EXPECT_TRUE(fit_normalizer("none", d).shift.empty());
  EXPECT_THROW(fit_normalizer("l2", d), ConfigError);
  Dataset wide = table({1, 2, 3}, 3);
  EXPECT_THROW(z.apply(wide), ConfigError);
}

TEST(HoldOut, DeterministicPerSeedAndDisjoint) {
  const HoldOut a = hold_out(100, 0.2, 5), b = hold_out(100, 0.2, 5), c = hold_out(100, 0.2, 6);
  EXPECT_EQ(a.validation.size(), 20u);
  EXPECT_EQ(a.train.size(), 80u);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_NE(a.validation, c.validation);
  std::vector<std::int64_t> all = a.train;
  all.insert(all.end(), a.validation.begin(), a.validation.end());
  std::sort(all.begin(), all.end());
  for (std::int64_t i = 0; i < 100; ++i)
    EXPECT_EQ(all[static_cast<std::size_t>(i)], i);
  EXPECT_TRUE(hold_out(10, 0, 1).validation.empty());
  EXPECT_THROW(hold_out(10, 1.0, 1), ConfigError);
}

TEST(DataPack, RoundTripsAndHashesByContent) {
  Dataset d = table({1, 2, 3, 4, 5, 6}, 2);
  d.labels = {0, 2, 1};
  d.num_classes = 3;
  const auto bytes = pack_dataset(d);
  const Dataset back = unpack_dataset(bytes, "back");
  EXPECT_EQ(back.images, d.images);
  EXPECT_EQ(back.labels, d.labels);
  EXPECT_EQ(content_hash(back), content_hash(d));
  Dataset other = d;
  other.images[5] = 7;
  EXPECT_NE(content_hash(other), content_hash(d));
  EXPECT_THROW(unpack_dataset(std::span(bytes).first(bytes.size() - 1), "x"), ConfigError);
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// A worker's fingerprint of the rows it holds (content_hash of its subset) is the server's
// rows_hash over the rows it assigned; another order of the same rows, or other rows, differ.
TEST(DataPack, RowsHashIsTheContentHashOfTheSubset) {
  Dataset d;
  d.channels = 1;
  d.height = 1;
  d.width = 2;
  d.num_classes = 2;
  for (int i = 0; i < 10; ++i) {
    d.images.insert(d.images.end(), {static_cast<float>(i), static_cast<float>(i) * 0.5f});
    d.labels.push_back(i % 2);
  }
  const std::vector<std::int64_t> rows{7, 2, 3, 9};
  EXPECT_EQ(rows_hash(d, rows), content_hash(subset(d, rows, "worker")));
  EXPECT_NE(rows_hash(d, rows), rows_hash(d, std::vector<std::int64_t>{2, 3, 7, 9}));
  EXPECT_NE(rows_hash(d, rows), rows_hash(d, std::vector<std::int64_t>{7, 2, 3}));
  std::vector<std::int64_t> all(10);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(rows_hash(d, all), content_hash(d));
  EXPECT_THROW(rows_hash(d, std::vector<std::int64_t>{10}), ConfigError);
}

}  // namespace
}  // namespace psgd::nn
