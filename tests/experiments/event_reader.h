#pragma once
// A small, independent reader of TensorBoard event files for tests: TFRecord frames checked with
// a bit-by-bit CRC-32C (not the writer's table), and just enough protobuf decoding to get
// Event{wall_time, step, file_version, summary{value{tag, simple_value}}} back.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace psgd::testing {

inline std::uint32_t bitwise_crc32c(const std::string& s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k)
      c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

inline std::uint32_t bitwise_masked(const std::string& s) {
  const std::uint32_t c = bitwise_crc32c(s);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

struct Event {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;
  std::map<std::string, float> scalars;
};

class ProtoReader {
 public:
  explicit ProtoReader(const std::string& b) : b_(b) {}
  bool done() const { return pos_ >= b_.size(); }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= b_.size()) throw std::runtime_error("truncated varint");
      const auto byte = static_cast<unsigned char>(b_[pos_++]);
      v |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  }
  std::string bytes(std::size_t n) {
    if (pos_ + n > b_.size()) throw std::runtime_error("truncated field");
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  T fixed() {
    T v;
    const std::string s = bytes(sizeof(T));
    std::memcpy(&v, s.data(), sizeof(T));
    return v;
  }
  void skip(std::uint32_t wire) {
    if (wire == 0)
      varint();
    else if (wire == 1)
      bytes(8);
    else if (wire == 2)
      bytes(varint());
    else if (wire == 5)
      bytes(4);
    else
      throw std::runtime_error("unknown wire type");
  }

 private:
  const std::string& b_;
  std::size_t pos_ = 0;
};

inline Event parse_event(const std::string& payload) {
  Event e;
  ProtoReader r(payload);
  while (!r.done()) {
    const std::uint64_t key = r.varint();
    const auto field = key >> 3;
    const auto wire = static_cast<std::uint32_t>(key & 7);
    if (field == 1 && wire == 1)
      e.wall_time = r.fixed<double>();
    else if (field == 2 && wire == 0)
      e.step = static_cast<std::int64_t>(r.varint());
    else if (field == 3 && wire == 2)
      e.file_version = r.bytes(r.varint());
    else if (field == 5 && wire == 2) {
      const std::string summary = r.bytes(r.varint());
      ProtoReader sr(summary);
      while (!sr.done()) {
        const std::uint64_t k = sr.varint();
        if ((k >> 3) != 1 || (k & 7) != 2) {
          sr.skip(static_cast<std::uint32_t>(k & 7));
          continue;
        }
        const std::string value = sr.bytes(sr.varint());
        ProtoReader vr(value);
        std::string tag;
        float v = 0;
        while (!vr.done()) {
          const std::uint64_t vk = vr.varint();
          if ((vk >> 3) == 1 && (vk & 7) == 2)
            tag = vr.bytes(vr.varint());
          else if ((vk >> 3) == 2 && (vk & 7) == 5)
            v = vr.fixed<float>();
          else
            vr.skip(static_cast<std::uint32_t>(vk & 7));
        }
        e.scalars[tag] = v;
      }
    } else {
      r.skip(wire);
    }
  }
  return e;
}

// Every record of a TFRecord file; throws on a bad length or CRC.
inline std::vector<Event> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  std::vector<Event> events;
  std::size_t pos = 0;
  auto u32 = [&](std::size_t at) {
    std::uint32_t v;
    std::memcpy(&v, all.data() + at, 4);
    return v;
  };
  while (pos < all.size()) {
    if (pos + 12 > all.size()) throw std::runtime_error("truncated record header");
    const std::string len_bytes = all.substr(pos, 8);
    std::uint64_t len;
    std::memcpy(&len, len_bytes.data(), 8);
    if (u32(pos + 8) != bitwise_masked(len_bytes)) throw std::runtime_error("bad length CRC");
    if (pos + 12 + len + 4 > all.size()) throw std::runtime_error("truncated record");
    const std::string payload = all.substr(pos + 12, len);
    if (u32(pos + 12 + len) != bitwise_masked(payload)) throw std::runtime_error("bad data CRC");
    events.push_back(parse_event(payload));
    pos += 12 + len + 4;
  }
  return events;
}

}  // namespace psgd::testing
