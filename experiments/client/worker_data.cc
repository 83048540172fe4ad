#include "experiments/client/worker_data.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"

namespace psgd {

WorkerData::WorkerData(const JobSpec& spec, const Job& job, std::string dataset)
    : spec_(spec), job_(job), dataset_(std::move(dataset)) {}

WorkerData::Start WorkerData::begin() {
  // Workers do not evaluate: load the test split's first sample only.
  std::optional<nn::DataSplit> local;
  std::string why_not;
  try {
    local = nn::load_dataset(dataset_, spec_.train_samples, 1, spec_.source_options());
  } catch (const ConfigError& e) {
    if (!spec_.ships_data()) throw;
    why_not = e.what();
  }
  Start start;
  if (spec_.ship_data == "auto") return offer_rows(std::move(local), why_not);
  if (spec_.ship_data == "always") {
    std::string hash;
    if (local) {
      hash = nn::content_hash(local->train);
      if (hash == job_.data_hash) {
        local_train_ = std::move(local->train);
      } else {
        why_not = fmt::format("this machine's {} differs from the server's (sha256 {}... vs {}...)",
                              dataset_, hash.substr(0, 12), job_.data_hash.substr(0, 12));
        hash.clear();
      }
    }
    start.note = local_train_ ? "holds the server's training set; asking it not to ship"
                              : fmt::format(
                                    "no usable local data ({}); the server ships this "
                                    "worker's samples",
                                    why_not);
    start.offer = DataOffer{.hash = hash, .dataset = dataset_, .why = why_not};
    return start;
  }
  for (std::int64_t i : job_.samples) {
    if (i < 0 || static_cast<std::size_t>(i) >= local->train.size()) {
      throw ConfigError(fmt::format(
          "the server assigned sample {} but this machine's copy of {} has {} training samples", i,
          dataset_, local->train.size()));
    }
  }
  start.samples = nn::subset(local->train, job_.samples, local->train.name);
  done_ = true;
  return start;
}

// --ship_data auto: this machine's rows for the job's samples, and their fingerprint for the
// server, which ships the rows only when it differs from its own (or there is none).
WorkerData::Start WorkerData::offer_rows(std::optional<nn::DataSplit> local, std::string why_not) {
  Start start;
  DataOffer offer{.dataset = dataset_};
  if (local) {
    const std::size_t size = local->train.size();
    const bool fits = std::all_of(job_.samples.begin(), job_.samples.end(), [&](std::int64_t i) {
      return i >= 0 && static_cast<std::size_t>(i) < size;
    });
    if (fits) {
      local_samples_ = nn::subset(local->train, job_.samples, local->train.name);
      offer.rows_sha256 = nn::content_hash(*local_samples_);
    } else {
      why_not = fmt::format("its {} has only {} training samples", dataset_, size);
    }
  }
  offer.why = why_not;
  start.note =
      local_samples_
          ? "read its rows from this machine's copy; the server checks them and ships "
            "them only if they differ from its own"
          : fmt::format("no usable local data ({}); the server ships this worker's rows", why_not);
  start.offer = std::move(offer);
  return start;
}

std::optional<nn::Dataset> WorkerData::on_chunk(const DataChunk& chunk) {
  if (!spec_.ships_data() || done_) {
    throw ProtocolError("the server sent DataChunk without --ship_data or after the data");
  }
  if (chunk.count == 0 && local_samples_) {
    received_note_ = "the server confirmed this machine's rows; nothing shipped";
    auto samples = std::move(*local_samples_);
    local_samples_.reset();
    done_ = true;
    return samples;
  }
  if (chunk.count == 0) {
    if (!local_train_) {
      throw ProtocolError("the server skipped shipping but this worker has no data");
    }
    received_note_ = "the server confirmed this machine's copy of the data; nothing shipped";
    auto samples = nn::subset(*local_train_, job_.samples, local_train_->name);
    local_train_.reset();
    done_ = true;
    return samples;
  }
  assembler_.add(chunk);
  if (!assembler_.complete()) return std::nullopt;
  auto samples = nn::unpack_dataset(assembler_.bytes(), dataset_ + " shipped");
  if (samples.size() != job_.samples.size()) {
    throw ProtocolError(fmt::format("the server shipped {} samples but assigned {}", samples.size(),
                                    job_.samples.size()));
  }
  local_samples_.reset();
  received_note_ =
      fmt::format("received {} samples: {} bytes in {} chunk(s), {:.1f} KiB compressed",
                  samples.size(), assembler_.bytes().size(), chunk.count,
                  static_cast<double>(assembler_.compressed_bytes()) / 1024);
  assembler_ = ChunkAssembler{};
  done_ = true;
  return samples;
}

}  // namespace psgd
