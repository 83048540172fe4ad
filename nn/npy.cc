#include "nn/npy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace psgd::nn {
namespace {

constexpr std::int64_t kMaxLabel = 65535;
constexpr std::uint64_t kMaxArrayBytes = 1ull << 40;

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw ConfigError(fmt::format("cannot open {}", path));
  const auto size = static_cast<std::size_t>(in.tellg());
  std::vector<unsigned char> bytes(size);
  in.seekg(0);
  if (size > 0 &&
      !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw ConfigError(fmt::format("cannot read {}", path));
  }
  return bytes;
}

std::size_t item_size(const std::string& dtype, const std::string& what) {
  if (dtype == "|u1" || dtype == "|i1" || dtype == "<u1" || dtype == "<i1") return 1;
  if (dtype == "<i4" || dtype == "<f4") return 4;
  if (dtype == "<i8" || dtype == "<f8") return 8;
  throw ConfigError(
      fmt::format("{}: dtype '{}' is not supported (use <f4, <f8, |u1, <i4 or <i8, little-endian)",
                  what, dtype));
}

// The value of `key` in the header dict: the text after "'key':" up to the next top-level comma.
std::string dict_value(const std::string& header, const std::string& key, const std::string& what) {
  const std::string k = "'" + key + "'";
  auto pos = header.find(k);
  if (pos == std::string::npos) {
    throw ConfigError(fmt::format("{}: the .npy header has no {} (header: {})", what, k, header));
  }
  pos = header.find(':', pos + k.size());
  if (pos == std::string::npos) throw ConfigError(fmt::format("{}: malformed .npy header", what));
  ++pos;
  while (pos < header.size() && header[pos] == ' ')
    ++pos;
  std::size_t end = pos;
  if (end < header.size() && header[end] == '(') {
    end = header.find(')', end);
    if (end == std::string::npos) throw ConfigError(fmt::format("{}: malformed .npy shape", what));
    return header.substr(pos, end + 1 - pos);
  }
  end = header.find_first_of(",}", pos);
  if (end == std::string::npos) throw ConfigError(fmt::format("{}: malformed .npy header", what));
  std::string v = header.substr(pos, end - pos);
  while (!v.empty() && v.back() == ' ')
    v.pop_back();
  return v;
}

std::vector<std::int64_t> parse_shape(const std::string& text, const std::string& what) {
  std::vector<std::int64_t> shape;
  std::size_t i = 1;  // after '('
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ','))
      ++i;
    if (i >= text.size() || text[i] == ')') break;
    std::int64_t v = 0;
    bool digits = false;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) {
        throw ConfigError(fmt::format("{}: implausible shape {}", what, text));
      }
      v = v * 10 + (text[i] - '0');
      digits = true;
      ++i;
    }
    if (!digits) throw ConfigError(fmt::format("{}: malformed shape {}", what, text));
    shape.push_back(v);
  }
  return shape;
}

std::uint32_t u16(const unsigned char* p) {
  return p[0] | (std::uint32_t{p[1]} << 8);
}
std::uint32_t u32(const unsigned char* p) {
  return p[0] | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element i of an array as a double (little-endian host assumed, as NumPy's '<' is).
double element(const NpyArray& a, std::size_t i) {
  const unsigned char* p = a.data.data();
  const std::string& t = a.dtype;
  if (t == "|u1" || t == "<u1") return p[i];
  if (t == "|i1" || t == "<i1") return static_cast<signed char>(p[i]);
  if (t == "<i4") return load<std::int32_t>(p + 4 * i);
  if (t == "<i8") return static_cast<double>(load<std::int64_t>(p + 8 * i));
  if (t == "<f4") return load<float>(p + 4 * i);
  return load<double>(p + 8 * i);
}

}  // namespace

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (auto d : shape)
    n *= d;
  return n;
}

NpyArray parse_npy(std::span<const unsigned char> b, const std::string& what) {
  static constexpr unsigned char kMagic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (b.size() < 10 || std::memcmp(b.data(), kMagic, 6) != 0) {
    throw ConfigError(fmt::format("{} is not a .npy file (no \\x93NUMPY magic)", what));
  }
  const unsigned major = b[6];
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = u16(b.data() + 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw ConfigError(fmt::format("{} is truncated in its header", what));
    header_len = u32(b.data() + 8);
    offset = 12;
  } else {
    throw ConfigError(fmt::format("{}: .npy format version {} is not supported", what, major));
  }
  if (header_len > b.size() - offset) {
    throw ConfigError(fmt::format("{} is truncated: its header needs {} bytes, {} are left", what,
                                  header_len, b.size() - offset));
  }
  const std::string header(reinterpret_cast<const char*>(b.data() + offset), header_len);
  offset += header_len;

  NpyArray a;
  std::string descr = dict_value(header, "descr", what);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"')) {
    throw ConfigError(fmt::format("{}: unsupported dtype description {}", what, descr));
  }
  a.dtype = descr.substr(1, descr.size() - 2);
  const std::size_t item = item_size(a.dtype, what);
  const std::string fortran = dict_value(header, "fortran_order", what);
  if (fortran == "True") {
    throw ConfigError(fmt::format(
        "{}: Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray", what));
  }
  if (fortran != "False") throw ConfigError(fmt::format("{}: malformed fortran_order", what));
  a.shape = parse_shape(dict_value(header, "shape", what), what);
  std::uint64_t numel = 1;
  for (auto d : a.shape) {
    if (d != 0 && numel > kMaxArrayBytes / static_cast<std::uint64_t>(d)) {
      throw ConfigError(fmt::format("{}: implausible shape ({})", what, fmt::join(a.shape, ", ")));
    }
    numel *= static_cast<std::uint64_t>(d);
  }
  const std::uint64_t bytes = numel * item;
  if (bytes > kMaxArrayBytes) throw ConfigError(fmt::format("{}: array too large", what));
  if (b.size() - offset < bytes) {
    throw ConfigError(
        fmt::format("{} is truncated: shape ({}) of {} needs {} bytes of data, the file has {}",
                    what, fmt::join(a.shape, ", "), a.dtype, bytes, b.size() - offset));
  }
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(offset),
                b.begin() + static_cast<std::ptrdiff_t>(offset + bytes));
  return a;
}

NpyArray read_npy(const std::string& path) {
  const auto bytes = read_all(path);
  return parse_npy(bytes, path);
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  const auto z = read_all(path);
  auto corrupt = [&](const std::string& why) {
    return ConfigError(fmt::format("{} is not a readable .npz (zip) archive: {}", path, why));
  };
  // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end.
  constexpr std::size_t kEocd = 22;
  if (z.size() < kEocd) throw corrupt("too short for a zip archive");
  std::size_t eocd = std::string::npos;
  const std::size_t lowest = z.size() > kEocd + 65535 ? z.size() - kEocd - 65535 : 0;
  for (std::size_t p = z.size() - kEocd + 1; p-- > lowest;) {
    if (u32(&z[p]) == 0x06054b50 && p + kEocd + u16(&z[p + 20]) == z.size()) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string::npos) throw corrupt("no end-of-central-directory record");
  const std::uint32_t entries = u16(&z[eocd + 10]);
  const std::uint32_t cd_size = u32(&z[eocd + 12]);
  const std::uint32_t cd_offset = u32(&z[eocd + 16]);
  if (entries == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    throw corrupt("zip64 archives (over 4 GiB or 65535 members) are not supported");
  }
  if (u16(&z[eocd + 4]) != 0 || u16(&z[eocd + 6]) != 0 || u16(&z[eocd + 8]) != entries) {
    throw corrupt("multi-disk archives are not supported");
  }
  if (std::uint64_t{cd_offset} + cd_size > eocd) throw corrupt("central directory out of bounds");

  std::map<std::string, NpyArray> out;
  std::size_t p = cd_offset;
  const std::size_t cd_end = std::size_t{cd_offset} + cd_size;
  for (std::uint32_t e = 0; e < entries; ++e) {
    if (p + 46 > cd_end || u32(&z[p]) != 0x02014b50) throw corrupt("bad central directory entry");
    const std::uint32_t flags = u16(&z[p + 8]);
    const std::uint32_t method = u16(&z[p + 10]);
    const std::uint32_t crc = u32(&z[p + 16]);
    const std::uint32_t csize = u32(&z[p + 20]);
    const std::uint32_t usize = u32(&z[p + 24]);
    const std::size_t name_len = u16(&z[p + 28]);
    const std::size_t extra_len = u16(&z[p + 30]);
    const std::size_t comment_len = u16(&z[p + 32]);
    const std::uint32_t local = u32(&z[p + 42]);
    if (p + 46 + name_len + extra_len + comment_len > cd_end) throw corrupt("entry out of bounds");
    const std::string name(reinterpret_cast<const char*>(&z[p + 46]), name_len);
    p += 46 + name_len + extra_len + comment_len;
    if (flags & 1u) throw corrupt(fmt::format("member {} is encrypted", name));
    if (csize == 0xffffffff || usize == 0xffffffff || local == 0xffffffff) {
      throw corrupt(fmt::format("member {} needs zip64 (over 4 GiB)", name));
    }
    if (method != 0 && method != 8) {
      throw corrupt(fmt::format("member {} uses compression method {} (only stored and deflate)",
                                name, method));
    }
    if (std::uint64_t{local} + 30 > cd_offset || u32(&z[local]) != 0x04034b50) {
      throw corrupt(fmt::format("member {}: bad local header", name));
    }
    const std::uint64_t data =
        std::uint64_t{local} + 30 + u16(&z[local + 26]) + u16(&z[local + 28]);
    if (data + csize > cd_offset) throw corrupt(fmt::format("member {} runs out of bounds", name));
    if (usize > kMaxArrayBytes) throw corrupt(fmt::format("member {} is too large", name));
    std::vector<unsigned char> raw(usize);
    const unsigned char* src = &z[static_cast<std::size_t>(data)];
    if (method == 0) {
      if (csize != usize) throw corrupt(fmt::format("stored member {} has two sizes", name));
      std::memcpy(raw.data(), src, usize);
    } else {
      z_stream s{};
      if (inflateInit2(&s, -MAX_WBITS) != Z_OK) throw corrupt("zlib inflateInit2 failed");
      s.next_in = const_cast<unsigned char*>(src);
      s.avail_in = csize;
      s.next_out = raw.data();
      s.avail_out = usize;
      const int rc = inflate(&s, Z_FINISH);
      const auto produced = s.total_out;
      inflateEnd(&s);
      if (rc != Z_STREAM_END || produced != usize) {
        throw corrupt(fmt::format("member {} does not inflate to its {} bytes (zlib: {})", name,
                                  usize,
                                  rc == Z_STREAM_END ? "size mismatch" : std::to_string(rc)));
      }
    }
    if (crc32(0L, raw.data(), static_cast<uInt>(raw.size())) != crc) {
      throw corrupt(fmt::format("member {} fails its CRC-32 check", name));
    }
    std::string key = name;
    if (key.ends_with(".npy")) key.resize(key.size() - 4);
    out[key] = parse_npy(raw, path + ":" + name);
  }
  return out;
}

std::string detect_layout(std::span<const std::int64_t> shape) {
  if (shape.size() != 4) return "nchw";
  const auto channel_like = [](std::int64_t v) { return v == 1 || v == 3 || v == 4; };
  return channel_like(shape[3]) && !channel_like(shape[1]) ? "nhwc" : "nchw";
}

Dataset dataset_from_arrays(const NpyArray& x, const NpyArray& y, const std::string& what,
                            const std::string& y_name, const ArrayOptions& options,
                            std::vector<std::string>* notes) {
  Dataset d;
  const auto& s = x.shape;
  std::string layout = "nchw";
  if (s.size() == 2) {
    d.width = s[1];
  } else if (s.size() == 3) {
    d.height = s[1];
    d.width = s[2];
  } else if (s.size() == 4) {
    layout = options.layout == "auto" ? detect_layout(s) : options.layout;
    if (layout == "nhwc") {
      d.height = s[1];
      d.width = s[2];
      d.channels = s[3];
    } else {
      d.channels = s[1];
      d.height = s[2];
      d.width = s[3];
    }
    if (notes && options.layout == "auto") {
      notes->push_back(fmt::format(
          "{}: shape ({}) read as {} (--image_layout auto; give --image_layout {} if that is "
          "wrong)",
          what, fmt::join(s, ", "),
          layout == "nhwc" ? "channels-last N x H x W x C (Keras) and converted to N x C x H x W"
                           : "channels-first N x C x H x W",
          layout == "nhwc" ? "nchw" : "nhwc"));
    }
  } else {
    throw ConfigError(
        fmt::format("{}: features must have shape (N, F), (N, H, W), (N, C, H, W) or (N, H, W, C) "
                    "(--image_layout), got ({})",
                    what, fmt::join(s, ", ")));
  }
  if (s.size() == 2) d.height = 1;
  if (s[0] == 0 || d.sample_numel() == 0) throw ConfigError(fmt::format("{}: empty array", what));
  const bool y_ok = options.regression
                        ? (y.shape.size() == 1 || y.shape.size() == 2)
                        : (y.shape.size() == 1) || (y.shape.size() == 2 && y.shape[1] == 1);
  if (!y_ok) {
    throw ConfigError(fmt::format(
        "{}: {} must have shape {}, got ({})", y_name, options.regression ? "targets" : "labels",
        options.regression ? "(N) or (N, T)" : "(N) or (N, 1)", fmt::join(y.shape, ", ")));
  }
  if (y.shape[0] != s[0]) {
    throw ConfigError(
        fmt::format("{} has {} feature rows but {} has {} labels", what, s[0], y_name, y.shape[0]));
  }
  if (!options.regression && y.dtype.find('f') != std::string::npos) {
    throw ConfigError(fmt::format(
        "{}: labels must have an integer dtype, got {} (float targets: --target regression)",
        y_name, y.dtype));
  }
  const bool pixels = x.dtype.find("u1") != std::string::npos;
  const auto n = static_cast<std::size_t>(x.numel());
  d.images.resize(n);
  if (layout == "nhwc") {
    // (N, H, W, C) to (N, C, H, W): each sample's values gathered channel by channel.
    const auto hw = static_cast<std::size_t>(d.height * d.width);
    const auto c = static_cast<std::size_t>(d.channels);
    const std::size_t per = hw * c;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t sample = i / per, within = i % per;
      const std::size_t pixel = within / c, channel = within % c;
      const double v = element(x, i);
      d.images[sample * per + channel * hw + pixel] = static_cast<float>(pixels ? v / 255.0 : v);
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const double v = element(x, i);
      d.images[i] = static_cast<float>(pixels ? v / 255.0 : v);
    }
  }
  d.labels.assign(static_cast<std::size_t>(s[0]), 0);
  if (options.regression) {
    d.target_dims = y.shape.size() == 2 ? y.shape[1] : 1;
    if (d.target_dims < 1) throw ConfigError(fmt::format("{}: targets have no columns", y_name));
    d.targets.resize(static_cast<std::size_t>(y.numel()));
    for (std::size_t i = 0; i < d.targets.size(); ++i) {
      const double v = element(y, i);
      if (!std::isfinite(v)) {
        throw ConfigError(fmt::format("{}: target {} of sample {} is not finite", y_name, v,
                                      i / static_cast<std::size_t>(d.target_dims)));
      }
      d.targets[i] = static_cast<float>(v);
    }
    d.num_classes = 1;
    return d;
  }
  for (std::size_t i = 0; i < d.labels.size(); ++i) {
    const double v = element(y, i);
    if (v < 0 || v > kMaxLabel) {
      throw ConfigError(fmt::format("{}: label {} of sample {} is out of range (0..{})", y_name, v,
                                    i, kMaxLabel));
    }
    d.labels[i] = static_cast<std::int64_t>(v);
  }
  d.num_classes = static_cast<int>(*std::max_element(d.labels.begin(), d.labels.end())) + 1;
  return d;
}

}  // namespace psgd::nn
