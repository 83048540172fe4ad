#pragma once
// TensorBoard event files without TensorFlow: scalars written as TFRecord frames of hand-encoded
// `tensorflow.Event` protobufs, which TensorBoard's event-file loader reads.
//
// TFRecord frame: uint64 length (little endian), uint32 masked CRC32C of those 8 bytes, the
// payload, uint32 masked CRC32C of the payload. The payload is an Event:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// Only these fields are written. The first record of a file carries file_version
// "brain.Event:2", as TensorFlow's writer does.
//
// Threading: a writer is used by one thread at a time.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/files.h"

namespace psgd {

// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), as in RFC 3720:
// crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::span<const std::uint8_t> data);
std::uint32_t crc32c(std::string_view data);
// TFRecord's masking: rotate right by 15 bits and add 0xa282ead8.
std::uint32_t masked_crc32c(std::string_view data);

// The serialized Event protobufs (exposed for tests).
std::string encode_scalar_event(double wall_time, std::int64_t step,
                                std::span<const std::pair<std::string, float>> scalars);
std::string encode_file_version_event(double wall_time);
// One TFRecord frame around `payload`.
std::string tfrecord_frame(std::string_view payload);

struct MetricsRow;
struct WorkerRow;
// The scalars of one evaluation: loss/test, loss/train, accuracy/test, bytes/up, bytes/down,
// time/wall_s, time/virtual_s (simulation), throughput/samples, and the workers' mean time split
// of that epoch (time_split/compute_s, encode_s, wait_s, transfer_s, held_s, decode_s).
std::vector<std::pair<std::string, float>> epoch_scalars(const MetricsRow& row,
                                                         const std::vector<WorkerRow>& workers);

class TensorBoardWriter {
 public:
  // Creates `dir` and the file events.out.tfevents.<unix seconds>.<host> in it. Throws IoError.
  explicit TensorBoardWriter(const std::string& dir);

  // One event holding every scalar at `step`, stamped with the current time, appended as one whole
  // TFRecord (or not at all: IoError) so TensorBoard sees a run while it is going.
  void add_scalars(std::int64_t step, std::span<const std::pair<std::string, float>> scalars);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& payload);
  std::string path_;
  AppendFile out_;
};

}  // namespace psgd
