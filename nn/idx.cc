#include "nn/idx.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"

namespace psgd::nn {
namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr std::uint32_t kMaxSamples = 1u << 30;
constexpr std::uint32_t kMaxSide = 1u << 14;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

class IdxFile {
 public:
  explicit IdxFile(std::string path) : path_(std::move(path)) {
    errno = 0;
    file_.reset(gzopen(path_.c_str(), "rb"));
    if (!file_) {
      throw ConfigError(fmt::format("cannot open {}: {}", path_,
                                    errno != 0 ? std::strerror(errno) : "out of memory"));
    }
    gzbuffer(file_.get(), 1 << 20);
  }

  const std::string& path() const { return path_; }

  // Reads up to n bytes; returns how many were read (fewer only at end of file).
  std::size_t read_some(unsigned char* out, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 26));
      const int got = gzread(file_.get(), out + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_.get(), &code);
        // A gzip stream cut short: report it as a truncated file, with the byte counts.
        if (code == Z_BUF_ERROR) break;
        throw ConfigError(
            fmt::format("cannot read {}: {}", path_, code == Z_ERRNO ? std::strerror(errno) : msg));
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  // Reads exactly n bytes of `what`; a short file is malformed.
  void read_exact(unsigned char* out, std::size_t n, std::size_t offset, const char* what) {
    const std::size_t got = read_some(out, n);
    if (got != n) {
      throw ConfigError(
          fmt::format("{} is truncated: expected {} bytes of {} (at byte offset {}), found only {}",
                      path_, n, what, offset, got));
    }
  }

  std::uint32_t read_u32(std::size_t offset, const char* what) {
    std::array<unsigned char, 4> b{};
    read_exact(b.data(), b.size(), offset, what);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
           std::uint32_t{b[3]};
  }

 private:
  std::string path_;
  std::unique_ptr<gzFile_s, GzCloser> file_;
};

void check_magic(const IdxFile& f, std::uint32_t magic, std::uint32_t expected, const char* kind) {
  if (magic != expected) {
    throw ConfigError(fmt::format(
        "{} is not an IDX {} file: magic number 0x{:08x}, expected 0x{:08x} (unsigned byte, {} "
        "dimension{})",
        f.path(), kind, magic, expected, expected & 0xff, (expected & 0xff) == 1 ? "" : "s"));
  }
}

void check_dim(const IdxFile& f, std::uint32_t value, std::uint32_t max, const char* what) {
  if (value == 0 || value > max) {
    throw ConfigError(
        fmt::format("{} has an implausible {}: {} (expected 1..{})", f.path(), what, value, max));
  }
}

}  // namespace

Dataset read_idx(const std::string& images_path, const std::string& labels_path,
                 std::int64_t limit) {
  if (limit < 0) throw ConfigError(fmt::format("read_idx: negative sample limit {}", limit));

  IdxFile images(images_path);
  check_magic(images, images.read_u32(0, "header"), kImagesMagic, "images");
  const std::uint32_t count = images.read_u32(4, "header");
  const std::uint32_t rows = images.read_u32(8, "header");
  const std::uint32_t cols = images.read_u32(12, "header");
  check_dim(images, count, kMaxSamples, "image count");
  check_dim(images, rows, kMaxSide, "row count");
  check_dim(images, cols, kMaxSide, "column count");

  IdxFile labels(labels_path);
  check_magic(labels, labels.read_u32(0, "header"), kLabelsMagic, "labels");
  const std::uint32_t label_count = labels.read_u32(4, "header");
  check_dim(labels, label_count, kMaxSamples, "label count");
  if (label_count != count) {
    throw ConfigError(fmt::format("{} holds {} labels but {} holds {} images", labels_path,
                                  label_count, images_path, count));
  }

  // With a limit only the first `n` samples are read (and checked for truncation).
  const std::size_t n =
      limit > 0 ? std::min<std::size_t>(count, static_cast<std::size_t>(limit)) : count;
  const std::size_t numel = std::size_t{rows} * cols;

  Dataset d;
  d.channels = 1;
  d.height = rows;
  d.width = cols;

  std::vector<unsigned char> raw(n * numel);
  images.read_exact(raw.data(), raw.size(), 16, "pixel data");
  d.images.resize(raw.size());
  std::transform(raw.begin(), raw.end(), d.images.begin(),
                 [](unsigned char v) { return static_cast<float>(v) / 255.0f; });

  raw.resize(n);
  labels.read_exact(raw.data(), raw.size(), 8, "labels");
  d.labels.assign(raw.begin(), raw.end());
  const unsigned char max_label = raw.empty() ? 0 : *std::max_element(raw.begin(), raw.end());
  d.num_classes = int{max_label} + 1;  // at most 256 by construction
  return d;
}

}  // namespace psgd::nn
