#include "nn/data_pack.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>

#include "core/error.h"

namespace psgd::nn {
namespace {

constexpr char kMagic[8] = {'P', 'S', 'G', 'D', 'P', 'A', 'C', 'K'};
constexpr std::uint32_t kVersion = 2;
constexpr std::size_t kHeader = 8 + 4 + 3 * 8 + 4 + 8 + 8;

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

template <class T>
T get(std::span<const std::uint8_t> b, std::size_t offset) {
  T v;
  std::memcpy(&v, b.data() + offset, sizeof(T));
  return v;
}

std::vector<std::uint8_t> header_of(const Dataset& d, std::uint64_t rows) {
  std::vector<std::uint8_t> h(kMagic, kMagic + 8);
  put(h, kVersion);
  put(h, d.channels);
  put(h, d.height);
  put(h, d.width);
  put(h, static_cast<std::int32_t>(d.num_classes));
  put(h, rows);
  put(h, d.target_dims);
  return h;
}

std::vector<std::uint8_t> header_of(const Dataset& d) {
  return header_of(d, static_cast<std::uint64_t>(d.size()));
}

struct MdFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw Error("OpenSSL: cannot initialise SHA-256");
    }
  }
  void add(const void* p, std::size_t n) {
    if (n > 0 && EVP_DigestUpdate(ctx_.get(), p, n) != 1) throw Error("OpenSSL: SHA-256 failed");
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1) throw Error("OpenSSL: SHA-256 failed");
    std::string s;
    for (unsigned i = 0; i < len; ++i)
      s += fmt::format("{:02x}", md[i]);
    return s;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, MdFree> ctx_;
};

}  // namespace

std::vector<std::uint8_t> pack_dataset(const Dataset& d) {
  std::vector<std::uint8_t> out = header_of(d);
  const std::size_t labels = d.labels.size() * sizeof(std::int64_t);
  const std::size_t targets = d.targets.size() * sizeof(float);
  const std::size_t values = d.images.size() * sizeof(float);
  out.resize(kHeader + labels + targets + values);
  // An empty dataset's vectors may hold null, which memcpy must not be given even for 0 bytes.
  if (labels > 0) std::memcpy(out.data() + kHeader, d.labels.data(), labels);
  if (targets > 0) std::memcpy(out.data() + kHeader + labels, d.targets.data(), targets);
  if (values > 0) std::memcpy(out.data() + kHeader + labels + targets, d.images.data(), values);
  return out;
}

Dataset unpack_dataset(std::span<const std::uint8_t> b, std::string name) {
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, 8) != 0) {
    throw ConfigError("shipped data is not a psgd data pack");
  }
  if (get<std::uint32_t>(b, 8) != kVersion) {
    throw ConfigError(fmt::format("shipped data pack has version {}, expected {}",
                                  get<std::uint32_t>(b, 8), kVersion));
  }
  Dataset d;
  d.channels = get<std::int64_t>(b, 12);
  d.height = get<std::int64_t>(b, 20);
  d.width = get<std::int64_t>(b, 28);
  d.num_classes = get<std::int32_t>(b, 36);
  const auto count = get<std::uint64_t>(b, 40);
  d.target_dims = get<std::int64_t>(b, 48);
  const auto side_ok = [](std::int64_t v) { return v >= 1 && v <= (1 << 16); };
  if (!side_ok(d.channels) || !side_ok(d.height) || !side_ok(d.width) || d.num_classes < 0 ||
      d.target_dims < 0 || d.target_dims > (1 << 16)) {
    throw ConfigError("shipped data pack has an implausible shape");
  }
  const auto numel = static_cast<std::uint64_t>(d.sample_numel());
  const auto dims = static_cast<std::uint64_t>(d.target_dims);
  const std::uint64_t per_sample = sizeof(std::int64_t) + (dims + numel) * sizeof(float);
  if (count > (b.size() - kHeader) / per_sample || kHeader + count * per_sample != b.size()) {
    throw ConfigError(fmt::format("shipped data pack of {} bytes does not hold {} samples of {}",
                                  b.size(), count, numel));
  }
  d.labels.resize(count);
  d.targets.resize(count * dims);
  d.images.resize(count * numel);
  if (count > 0) {  // an empty vector's data() may be null, which memcpy must not be given
    const std::size_t labels = count * sizeof(std::int64_t);
    const std::size_t targets = d.targets.size() * sizeof(float);
    std::memcpy(d.labels.data(), b.data() + kHeader, labels);
    if (targets > 0) std::memcpy(d.targets.data(), b.data() + kHeader + labels, targets);
    std::memcpy(d.images.data(), b.data() + kHeader + labels + targets,
                d.images.size() * sizeof(float));
  }
  for (auto l : d.labels) {
    if (l < 0 || l >= d.num_classes)
      throw ConfigError("shipped data pack has a label out of range");
  }
  d.name = std::move(name);
  return d;
}

std::string content_hash(const Dataset& d) {
  Sha256 h;
  const auto header = header_of(d);
  h.add(header.data(), header.size());
  h.add(d.labels.data(), d.labels.size() * sizeof(std::int64_t));
  h.add(d.targets.data(), d.targets.size() * sizeof(float));
  h.add(d.images.data(), d.images.size() * sizeof(float));
  return h.hex();
}

std::string rows_hash(const Dataset& d, std::span<const std::int64_t> rows) {
  Sha256 h;
  const auto header = header_of(d, rows.size());
  h.add(header.data(), header.size());
  for (std::int64_t r : rows) {
    if (r < 0 || static_cast<std::size_t>(r) >= d.size()) {
      throw ConfigError(fmt::format("rows_hash: row {} of a dataset of {} rows", r, d.size()));
    }
    h.add(&d.labels[static_cast<std::size_t>(r)], sizeof(std::int64_t));
  }
  const auto dims = static_cast<std::size_t>(d.target_dims);
  if (dims > 0) {
    for (std::int64_t r : rows)
      h.add(d.targets.data() + static_cast<std::size_t>(r) * dims, dims * sizeof(float));
  }
  const auto numel = static_cast<std::size_t>(d.sample_numel());
  for (std::int64_t r : rows)
    h.add(d.images.data() + static_cast<std::size_t>(r) * numel, numel * sizeof(float));
  return h.hex();
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  Sha256 h;
  h.add(bytes.data(), bytes.size());
  return h.hex();
}

}  // namespace psgd::nn
