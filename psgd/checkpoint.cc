#include "psgd/checkpoint.h"

#include <fmt/format.h>
#include <openssl/sha.h>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/files.h"
#include "network/archive.h"
#include "network/messages.h"

namespace psgd {
namespace {

constexpr std::size_t kPrefix = 8 + 4 + 4 + 8;  // magic, format, protocol, length
constexpr std::size_t kDigest = SHA256_DIGEST_LENGTH;

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i)));
}

template <class T>
T get(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

std::string hex(const unsigned char* digest, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i)
    s += fmt::format("{:02x}", digest[i]);
  return s;
}

template <class Archive>
void serialize_header(Archive& ar, CheckpointHeader& h) {
  ar(h.model, h.num_parameters, h.config_hash, h.strategy);
}

}  // namespace

std::vector<std::uint8_t> encode_checkpoint(const Checkpoint& c) {
  std::vector<std::uint8_t> payload;
  {
    wire::OutputArchive ar(payload);
    CheckpointHeader h = c.header;
    serialize_header(ar, h);
    ar(c.iteration, c.epochs_done, c.parameters, c.role_state, c.worker_batches, c.driver_state,
       c.worker_states, c.average);
  }
  std::vector<std::uint8_t> out(kCheckpointMagic, kCheckpointMagic + 8);
  put<std::uint32_t>(out, kCheckpointFormat);
  put<std::uint32_t>(out, kProtocolVersion);
  put<std::uint64_t>(out, payload.size());
  unsigned char digest[kDigest];
  SHA256(payload.data(), payload.size(), digest);
  out.insert(out.end(), digest, digest + kDigest);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Checkpoint decode_checkpoint(std::span<const std::uint8_t> bytes) {
  if (!bytes.empty() &&
      std::memcmp(bytes.data(), kCheckpointMagic, std::min<std::size_t>(bytes.size(), 8)) != 0) {
    throw CheckpointError("not a psgd checkpoint (wrong magic bytes)");
  }
  if (bytes.size() < kPrefix + kDigest) {
    throw CheckpointError(
        fmt::format("checkpoint truncated: {} bytes, shorter than its {}-byte header", bytes.size(),
                    kPrefix + kDigest));
  }
  const auto format = get<std::uint32_t>(bytes.data() + 8);
  if (format != kCheckpointFormat) {
    throw CheckpointError(fmt::format("checkpoint format version {}, this build reads version {}",
                                      format, kCheckpointFormat));
  }
  const auto protocol = get<std::uint32_t>(bytes.data() + 12);
  if (protocol != kProtocolVersion) {
    throw CheckpointError(fmt::format(
        "checkpoint written by psgd protocol v{}, this build speaks v{}; resume with the psgd "
        "version that wrote it",
        protocol, kProtocolVersion));
  }
  const auto length = get<std::uint64_t>(bytes.data() + 16);
  const std::size_t have = bytes.size() - kPrefix - kDigest;
  if (length > have) {
    throw CheckpointError(
        fmt::format("checkpoint truncated: {} bytes of body, the header says {}", have, length));
  }
  if (length < have) {
    throw CheckpointError(
        fmt::format("checkpoint corrupt: {} bytes after its {}-byte body", have - length, length));
  }
  const auto payload = bytes.subspan(kPrefix + kDigest);
  unsigned char digest[kDigest];
  SHA256(payload.data(), payload.size(), digest);
  if (std::memcmp(digest, bytes.data() + kPrefix, kDigest) != 0) {
    throw CheckpointError("checkpoint corrupt: SHA-256 of its contents does not match");
  }
  Checkpoint c;
  try {
    wire::InputArchive ar(payload);
    serialize_header(ar, c.header);
    ar(c.iteration, c.epochs_done, c.parameters, c.role_state, c.worker_batches, c.driver_state,
       c.worker_states, c.average);
    if (ar.remaining() != 0) throw ProtocolError(fmt::format("{} bytes left", ar.remaining()));
  } catch (const Error& e) {
    throw CheckpointError(fmt::format("checkpoint corrupt: {}", e.what()));
  }
  if (c.parameters.size() != c.header.num_parameters || c.iteration < 0 || c.epochs_done < 0 ||
      (!c.worker_states.empty() && c.worker_states.size() != c.worker_batches.size())) {
    throw CheckpointError(
        fmt::format("checkpoint corrupt: {} parameters for a model of {}, iteration {}, epoch {}",
                    c.parameters.size(), c.header.num_parameters, c.iteration, c.epochs_done));
  }
  return c;
}

void check_matches(const Checkpoint& c, const CheckpointHeader& expected) {
  const CheckpointHeader& h = c.header;
  if (h.model != expected.model || h.num_parameters != expected.num_parameters) {
    throw CheckpointError(fmt::format(
        "checkpoint is of another model: {} with {} parameters, this job's is {} with {}", h.model,
        h.num_parameters, expected.model, expected.num_parameters));
  }
  if (h.strategy != expected.strategy || h.config_hash != expected.config_hash) {
    throw CheckpointError(fmt::format(
        "checkpoint is of another job configuration ({} job, config hash {}...; this job: {}, "
        "{}...)",
        h.strategy, h.config_hash.substr(0, 12), expected.strategy,
        expected.config_hash.substr(0, 12)));
  }
}

bool checkpoint_due(const Schedule& schedule, std::int64_t every, std::int64_t before,
                    std::int64_t after) {
  if (every <= 0 || after <= before || after >= schedule.total_iterations()) return false;
  const std::int64_t ipe = schedule.iterations_per_epoch;
  return after / every != before / every || after / ipe != before / ipe;
}

std::string sha256_hex(std::span<const float> values) {
  unsigned char digest[kDigest];
  SHA256(reinterpret_cast<const unsigned char*>(values.data()), values.size_bytes(), digest);
  return hex(digest, kDigest);
}

void write_checkpoint_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  write_file_atomic(path, std::span<const std::uint8_t>(bytes));  // core/files.h
}

std::vector<std::uint8_t> read_checkpoint_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(fmt::format("no checkpoint at {}", path));
  std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                  std::istreambuf_iterator<char>()};
  if (in.bad()) throw CheckpointError(fmt::format("cannot read {}", path));
  return bytes;
}

}  // namespace psgd
