#pragma once
// A worker's training samples for its Job, socket-free: read from this machine's copy of the
// dataset, or (--ship_data always) received from the server in chunks, skipped when this
// machine's copy has the server's content hash, or (auto) read here and received instead only
// when their fingerprint differs from the server's. The samples come back raw, in the Job's order;
// the worker normalises them with the Job's statistics (experiments/worker_setup.h).
#include <optional>
#include <string>

#include "experiments/data_shipping.h"
#include "experiments/job_spec.h"
#include "network/messages.h"
#include "nn/data_source.h"
#include "nn/dataset.h"

namespace psgd {

class WorkerData {
 public:
  // `dataset`: where this machine keeps the job's dataset (the job's --dataset, or the client's
  // own --dataset).
  WorkerData(const JobSpec& spec, const Job& job, std::string dataset);

  // What to do first: the samples at once (read here), or a DataOffer to send (--ship_data).
  // ConfigError when the data cannot be read and nothing is to be shipped, or a sample is out of
  // range of this machine's copy.
  struct Start {
    std::optional<nn::Dataset> samples;
    std::optional<DataOffer> offer;
    std::string note;  // what was decided, for the worker's log
  };
  Start begin();
  // A chunk from the server: the samples once the last one arrived (or at once, when the server
  // confirmed this machine's copy). ProtocolError for chunks out of turn or inconsistent.
  std::optional<nn::Dataset> on_chunk(const DataChunk& chunk);
  // For the log once the samples are complete: "N samples: X bytes in C chunk(s), K KiB".
  std::string received_note() const { return received_note_; }

 private:
  const JobSpec& spec_;
  const Job& job_;
  std::string dataset_;
  Start offer_rows(std::optional<nn::DataSplit> local, std::string why_not);

  std::optional<nn::Dataset>
      local_train_;  // --ship_data always: this machine's copy, if it matches
  std::optional<nn::Dataset> local_samples_;  // auto: this machine's rows for the job's samples
  ChunkAssembler assembler_;
  bool done_ = false;
  std::string received_note_;
};

}  // namespace psgd
