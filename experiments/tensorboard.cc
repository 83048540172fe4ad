#include "experiments/tensorboard.h"

#include <fmt/format.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "experiments/provenance.h"
#include "experiments/run_dir.h"

namespace psgd {
namespace {

constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

// Protobuf wire format: a field key is (field_number << 3) | wire_type.
enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, std::uint32_t field, WireType type) {
  put_varint(out, (static_cast<std::uint64_t>(field) << 3) | type);
}
template <typename T>
void put_fixed(std::string& out, T value) {
  static_assert(std::endian::native == std::endian::little, "little-endian hosts only");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_event_header(std::string& out, double wall_time, std::int64_t step) {
  put_key(out, 1, kFixed64);
  put_fixed(out, wall_time);
  if (step != 0) {
    put_key(out, 2, kVarint);
    put_varint(out, static_cast<std::uint64_t>(step));
  }
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::uint32_t crc32c(std::span<const std::uint8_t> data) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::uint8_t b : data)
    c = kCrc32cTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::uint32_t crc32c(std::string_view data) {
  return crc32c(std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

std::uint32_t masked_crc32c(std::string_view data) {
  const std::uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_scalar_event(double wall_time, std::int64_t step,
                                std::span<const std::pair<std::string, float>> scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_key(v, 2, kFixed32);
    put_fixed(v, value);
    put_bytes(summary, 1, v);
  }
  std::string event;
  put_event_header(event, wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_event_header(event, wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string tfrecord_frame(std::string_view payload) {
  std::string frame;
  put_fixed(frame, static_cast<std::uint64_t>(payload.size()));
  put_fixed(frame, masked_crc32c(frame));
  frame.append(payload);
  put_fixed(frame, masked_crc32c(payload));
  return frame;
}

std::vector<std::pair<std::string, float>> epoch_scalars(const MetricsRow& row,
                                                         const std::vector<WorkerRow>& workers) {
  std::vector<std::pair<std::string, float>> s{
      {"accuracy/test", static_cast<float>(row.test_accuracy)},
      {"loss/test", static_cast<float>(row.test_loss)},
      {"bytes/up", static_cast<float>(row.bytes_up)},
      {"bytes/down", static_cast<float>(row.bytes_down)},
      {"time/wall_s", static_cast<float>(row.wall_s)},
      {"throughput/samples", static_cast<float>(row.samples)}};
  if (row.train_loss) s.emplace_back("loss/train", static_cast<float>(*row.train_loss));
  if (row.virtual_s) s.emplace_back("time/virtual_s", static_cast<float>(*row.virtual_s));
  if (!workers.empty()) {
    PhaseTimes sum;
    double held = 0, transfer = 0;
    for (const auto& w : workers) {
      sum += w.times;
      held += w.held_s;
      transfer += w.transfer_s;
    }
    const auto mean = [n = static_cast<double>(workers.size())](double v) {
      return static_cast<float>(v / n);
    };
    s.emplace_back("time_split/compute_s", mean(sum.compute_s));
    s.emplace_back("time_split/encode_s", mean(sum.encode_s));
    s.emplace_back("time_split/wait_s", mean(sum.wait_s));
    s.emplace_back("time_split/transfer_s", mean(transfer));
    s.emplace_back("time_split/held_s", mean(held));
    s.emplace_back("time_split/decode_s", mean(sum.decode_s));
  }
  return s;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(fmt::format("cannot create {}: {}", dir, ec.message()));
  const double now = unix_seconds();
  path_ = (fs::path(dir) /
           fmt::format("events.out.tfevents.{}.{}", static_cast<std::int64_t>(now), host_name()))
              .string();
  out_ = AppendFile(path_);
  write(encode_file_version_event(now));
}

void TensorBoardWriter::add_scalars(std::int64_t step,
                                    std::span<const std::pair<std::string, float>> scalars) {
  write(encode_scalar_event(unix_seconds(), step, scalars));
}

void TensorBoardWriter::write(const std::string& payload) {
  out_.append(tfrecord_frame(payload));  // a whole record or none (core/files.h)
}

}  // namespace psgd
