#pragma once
// Orchestration messages: the job around the training (experiments/ server and client).
//   Hello -> Job -> Ready ... Finish, ErrorMessage at any time; Leave from a worker that stops.
//   With --ship_data: Hello -> Job -> DataOffer -> DataChunk x n -> Ready ...
//   With --local_data: Hello -> Job -> LocalData -> LocalPlan (once every worker's is in) -> Ready
//   Peer-to-peer strategies: ... Ready -> PeerTable -> the workers link up (PeerHello first on each
//   worker-to-worker link) -> PeersUp -> training.
#include <cstdint>
#include <string>
#include <vector>

#ifndef PSGD_MESSAGE_TYPES
#error "include network/messages.h, of which this header is a part"
#endif

namespace psgd {

// Either way, at any time, then close: why the sender gives up. Its body is the raw UTF-8 text,
// not Cereal, so that a peer of any protocol version can show it.
struct ErrorMessage {
  std::string text;
};

// worker -> server, after authentication.
struct Hello {
  std::uint32_t protocol = kProtocolVersion;
  std::string host;          // the worker's host name
  std::int32_t pid = 0;      // the worker's process id, for logs
  std::int32_t cores = 0;    // hardware threads on the worker's host
  std::int32_t threads = 0;  // torch threads asked for on the client's command line (0: auto)
  std::string version;       // psgd build (git revision), for the run's provenance
  double slowdown = 1;       // the client's --slowdown (injected compute slowness), for the record
  // The client's --dead_after: it gives up a server silent this long, so the server's heartbeats
  // on this link come at least three times within it (network/liveness.h).
  double dead_after = 10;
};

// server -> worker: the job and this worker's share of the data.
struct Job {
  std::int32_t worker_id = 0;
  std::string spec_json;              // the JobSpec, as in config.json
  std::vector<std::int64_t> samples;  // indices into the training set this worker holds
  std::int32_t threads = 1;           // torch threads the worker should use
  std::uint64_t num_parameters = 0;   // the model size the server built, checked by the worker
  std::string data_hash;              // nn::content_hash of the server's training set
  std::vector<float> norm_shift;      // the normaliser's statistics (nn/normalize.h), computed
  std::vector<float> norm_scale;      // by the server on its training rows; empty for "none"
  std::int64_t train_size = 0;        // samples in the whole training set (for the schedule)
  // --codec gc / ndc: the blocks `samples` is the concatenation of, and their sizes, so the
  // worker can draw one batch per block with a batch order every replica of a block agrees on.
  std::vector<std::int64_t> block_ids;
  std::vector<std::int64_t> block_sizes;
  // Batches this worker id has already drawn from its batch order (a resumed run, or a slot taken
  // over from a lost worker): the worker skips them, so it continues the same batch order.
  std::int64_t start_batch = 0;
  // A resumed run: the worker's own state at the checkpoint (WorkerParts::snapshot: its role's
  // snapshot, i.e. its optimiser's momentum, its codecs' residuals and random streams, then its
  // model's buffers); empty: a fresh worker.
  std::vector<std::uint8_t> worker_state;
  // --model script:FILE: the TorchScript file's bytes and their SHA-256 (hex), which the worker
  // checks before it loads them. Empty for a built-in model.
  std::string model_file;
  std::string model_sha256;
  // --local_data: a random salt and, per row of the server's test set, the first 8 bytes of
  // SHA-256(salt, the row's features) (experiments/local_data.h); the worker counts how many of
  // its own rows hash alike (LocalData::test_rows) and never sees a test row. Empty otherwise.
  std::string test_salt;
  std::vector<std::uint64_t> test_hashes;
};

// worker -> server, after a Job with --ship_data auto or always: what this worker holds itself.
// always: `hash`, the content hash of its whole training set (empty: none, or not the job's);
// equal to Job::data_hash: no transfer. auto: `rows_sha256`, the fingerprint of the rows it
// assigned (nn::rows_hash, as in Ready::data_sha256; empty: it cannot read them); equal to the
// server's: no transfer. `dataset` is where it looked (its --dataset) and `why` why its copy is
// not usable, both for the server's log.
struct DataOffer {
  std::string hash;
  std::string rows_sha256;
  std::string dataset;
  std::string why;
};

// server -> worker: one piece of the worker's data pack (nn/data_pack.h), zlib-compressed.
// count == 0 means "your own copy matches, nothing is shipped".
struct DataChunk {
  std::uint32_t index = 0;               // 0 .. count-1, sent in order
  std::uint32_t count = 0;               // chunks in the pack
  std::uint64_t total_bytes = 0;         // uncompressed size of the whole pack
  std::string total_sha256;              // of the whole pack
  std::uint64_t raw_bytes = 0;           // uncompressed size of this chunk
  std::string sha256;                    // of this chunk, uncompressed
  std::vector<std::uint8_t> compressed;  // zlib stream of this chunk
};

// worker -> server: data loaded, model built, ready to train.
struct Ready {
  std::int32_t worker_id = 0;
  std::uint64_t num_parameters = 0;
  std::int64_t samples = 0;
  std::int32_t threads = 0;
  std::string detail;  // e.g. the BLAS in use, shown in the server's log
  // Peer-to-peer strategies: the port this worker accepts peer links on (its mesh listener; for
  // the gloo backend worker 0's rendezvous store). 0: none.
  std::int32_t peer_port = 0;
  // The fingerprint of the rows it holds, as read and before normalising (nn::rows_hash of its
  // samples in block order), and where it read them (its --dataset): the server compares the
  // fingerprint with its own over the rows it assigned and stops the job on a difference.
  std::string data_sha256;
  std::string dataset;
};

// worker -> server, after a Job with --local_data: what the worker's own file holds, and nothing
// of its rows. The server checks the shape and classes against its model, refuses a worker
// holding test rows, and fixes the schedule once every worker's report is in.
struct LocalData {
  std::int64_t samples = 0;                   // training rows in its file (after --train_samples)
  std::vector<std::int64_t> label_histogram;  // samples per class 0..K-1 of its file
  std::vector<std::int64_t> shape;            // channels, height, width, regression targets
  std::int64_t test_rows = 0;  // its rows whose salted hash is one of Job::test_hashes
  std::string dataset;         // where it read them (its --dataset), for the server's log
};

// server -> worker, --local_data, once every worker's LocalData is in (or at once to a worker
// rejoining): the sum of the workers' samples, over which the schedule is fixed (an epoch is
// ceil(train_size / (node_count x batch_size)) iterations), the model's class count, and the
// model's sample shape (channels, height, width, regression targets), which a worker whose file
// lays out as many features otherwise (a CSV's flat rows) gives its rows.
struct LocalPlan {
  std::int64_t train_size = 0;
  std::int32_t classes = 0;
  std::vector<std::int64_t> shape;
};

// server -> worker (peer-to-peer strategies, once every worker is Ready): where each worker
// listens, indexed by worker id.
struct PeerTable {
  std::vector<std::string> hosts;
  std::vector<std::int32_t> ports;
  // A random key for this job's peer links (32 bytes), known only to its workers: each link's
  // PeerHello proves it (network/auth.h, peer_proof).
  std::vector<std::uint8_t> key;
};

// worker -> worker, first frame on a peer link: who is calling, and the proof that it is a
// worker of this job: HMAC-SHA256 under PeerTable::key of (worker, callee, node_count, nonce).
struct PeerHello {
  std::int32_t worker = 0;
  std::int32_t node_count = 0;
  std::vector<std::uint8_t> nonce;  // 32 random bytes, never accepted twice by one mesh
  std::vector<std::uint8_t> proof;  // empty on a mesh without a key (tests)
};

// worker -> server: every peer link of this worker is up.
struct PeersUp {
  std::int32_t links = 0;
};

// worker -> server, at any time, then close: this worker was told to stop (SIGTERM, SIGINT) and
// leaves the job. The server counts it as lost at once, exactly as a worker that died: the
// strategy carries on without it where it can (README "Faults").
struct Leave {
  std::string why;  // e.g. "interrupted by SIGTERM"
};

// server -> worker (parameter-server strategies, --checkpoint_every): send your state now. The
// server sends it before the parameters that start the next round, and holds what a worker sends
// after its WorkerState until the checkpoint is written, so each state is consistent with the
// gradients the server has applied (experiments/server/checkpointer.h).
struct StateRequest {};

// worker -> server: the worker's own state (WorkerRole::snapshot) for a checkpoint, in answer to
// StateRequest, or unasked (peer-to-peer strategies) when its iteration count reaches a
// checkpoint; then it also carries the worker's parameters, which only the workers hold.
struct WorkerState {
  std::int64_t iteration = 0;       // the worker's iterations_done() when it took the snapshot
  std::vector<std::uint8_t> state;  // WorkerParts::snapshot(): the role's, and the model buffers
  std::vector<float> params;        // peer-to-peer only
};

// worker -> server, from the Job on, about once a second and before it leaves: the next piece
// of this worker's log (lines it printed) and of its per-batch trace (CSV rows without a header,
// experiments/worker_results.h kTraceColumns). Pieces are bounded (kWorkerLogPieceBytes each
// field); the server keeps at most a bounded amount per worker and writes them to
// workers/<id>/log.txt and trace.csv in the run directory. `last`: nothing follows (the answer
// to LogRequest, or a worker that gives up or leaves).
struct WorkerLog {
  std::string log;
  std::string trace;
  bool last = false;
};

// server -> worker, when the run ends (completed, failed or interrupted) and before the run
// directory is written: send what is left of your log and trace now (WorkerLog, last set).
struct LogRequest {};

// server -> worker: the job is over (status "completed" or why not).
struct Finish {
  std::string status;
  bool ok = true;
};

}  // namespace psgd
