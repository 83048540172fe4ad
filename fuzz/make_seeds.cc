// Writes seed corpora for the fuzz targets: a valid frame (fuzz_frame), a type byte + body
// (fuzz_message) of every message type of the list (network/messages.h), encoded payloads
// (fuzz_payload), a checkpoint (fuzz_checkpoint), handshakes (fuzz_handshake), a data shipment
// (fuzz_shipping), a file for every dataset parser (fuzz_dataset) and shared-memory traffic
// (fuzz_shm).
//   make_seeds OUT_DIR -> OUT_DIR/<target>/seed-*
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "codecs/factory.h"
#include "experiments/data_shipping.h"
#include "fuzz/codec_specs.h"
#include "fuzz/message_types.h"
#include "network/frame.h"
#include "network/messages.h"
#include "network/messages/link.h"
#include "nn/data_pack.h"
#include "psgd/checkpoint.h"
#include "psgd/ssgd.h"

namespace {

void write(const std::filesystem::path& dir, int i, const std::vector<std::uint8_t>& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// Appends a length-prefixed piece (fuzz/input_reader.h).
void piece(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> bytes) {
  out.push_back(static_cast<std::uint8_t>(bytes.size() & 0xff));
  out.push_back(static_cast<std::uint8_t>(bytes.size() >> 8));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

std::vector<std::uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

// The server's side and the client's of a handshake without a passphrase that completes, and the
// first steps of one with a passphrase (the proofs cannot be forged; the refusals can be reached).
void write_handshake_seeds(const std::filesystem::path& dir) {
  using psgd::fuzz::selector_of;
  const auto seq = [](std::uint8_t variant, const std::vector<psgd::Message>& ms) {
    std::vector<std::uint8_t> out{variant};
    for (const auto& m : ms) {
      out.push_back(selector_of(psgd::type_of(m)));
      piece(out, psgd::encode_body(m));
    }
    return out;
  };
  const psgd::AuthHello hello{.nonce = std::vector<std::uint8_t>(32, 7), .identity = "host:42"};
  const psgd::AuthChallenge challenge{
      .nonce = std::vector<std::uint8_t>(32, 9), .job_id = "job", .server_id = "server"};
  write(dir, 0, seq(2, {hello, psgd::AuthProof{}, psgd::Hello{.host = "host", .pid = 42}}));
  write(dir, 1, seq(0, {challenge, psgd::AuthOk{}}));
  write(dir, 2, seq(4, {challenge, psgd::AuthOk{}}));
  auto keyed = hello;
  keyed.has_key = true;
  write(dir, 3, seq(3, {keyed, psgd::AuthProof{.proof = std::vector<std::uint8_t>(32, 1)}}));
  auto required = challenge;
  required.required = true;
  required.proof = std::vector<std::uint8_t>(32, 1);
  write(dir, 4, seq(1, {required, psgd::ErrorMessage{"refused"}}));
}

// A small pack shipped in two chunks, and the pack alone.
void write_shipping_seeds(const std::filesystem::path& dir) {
  psgd::nn::Dataset d;
  d.channels = 1, d.height = 2, d.width = 2, d.num_classes = 3;
  for (int i = 0; i < 6; ++i) {
    d.labels.push_back(i % 3);
    for (int j = 0; j < 4; ++j)
      d.images.push_back(static_cast<float>(i * 4 + j) / 24.0f);
  }
  const auto pack = psgd::nn::pack_dataset(d);
  std::vector<std::uint8_t> chunks{0};
  for (const auto& c : psgd::make_chunks(pack, pack.size() / 2 + 1))
    piece(chunks, psgd::encode_body(psgd::Message(c)));
  write(dir, 0, chunks);
  std::vector<std::uint8_t> raw{1};
  raw.insert(raw.end(), pack.begin(), pack.end());
  write(dir, 1, raw);
}

// Two workers' pieces: rows, a log, a last piece, one malformed row.
void write_worker_log_seeds(const std::filesystem::path& dir) {
  std::vector<std::uint8_t> pieces;
  pieces.push_back(1);  // worker 0
  piece(pieces, psgd::encode_body(psgd::Message(
                    psgd::WorkerLog{.log = "client[0]: worker 0 of 2\n",
                                    .trace = "0.1,1,0,2.3,32,100,200\n0.2,1,1,2.1,32,200,400\n"})));
  pieces.push_back(2);  // worker 1
  piece(pieces, psgd::encode_body(
                    psgd::Message(psgd::WorkerLog{.trace = "0.1,1,0,2.3,32\n", .last = true})));
  write(dir, 0, pieces);
}

// One valid file (or pair) per parser: IDX, CIFAR-10, CSV, CSV pair, .npy pair.
void write_dataset_seeds(const std::filesystem::path& dir) {
  const auto be32 = [](std::vector<std::uint8_t>& v, std::uint32_t x) {
    for (int i = 3; i >= 0; --i)
      v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
  };
  std::vector<std::uint8_t> images, labels;
  be32(images, 0x803), be32(images, 3), be32(images, 2), be32(images, 2);
  for (int i = 0; i < 12; ++i)
    images.push_back(static_cast<std::uint8_t>(i * 20));
  be32(labels, 0x801), be32(labels, 3);
  labels.insert(labels.end(), {0, 1, 2});
  for (std::uint8_t parser : {0, 1}) {
    std::vector<std::uint8_t> seed{parser};
    piece(seed, images);
    seed.insert(seed.end(), labels.begin(), labels.end());
    write(dir, parser, seed);
  }
  std::vector<std::uint8_t> cifar{2};
  std::vector<std::uint8_t> record(3073, 100);
  record[0] = 7;
  piece(cifar, record);
  cifar.insert(cifar.end(), record.begin(), record.end());
  write(dir, 2, cifar);
  auto csv = std::vector<std::uint8_t>{3, 4};
  const auto table = bytes_of("a,b,label\n0.5,1.5,0\n2,3,1\n-1,4e-3,2\n");
  csv.insert(csv.end(), table.begin(), table.end());
  write(dir, 3, csv);
  std::vector<std::uint8_t> pair{4};
  piece(pair, bytes_of("1,2\n3,4\n"));
  const auto ys = bytes_of("0\n1\n");
  pair.insert(pair.end(), ys.begin(), ys.end());
  write(dir, 4, pair);
  const auto npy = [](const std::string& descr, const std::string& shape, std::size_t bytes) {
    std::string header =
        "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0)
      header += ' ';
    header += '\n';
    std::vector<std::uint8_t> v = bytes_of("\x93NUMPY");
    v.push_back(1), v.push_back(0);
    v.push_back(static_cast<std::uint8_t>(header.size() & 0xff));
    v.push_back(static_cast<std::uint8_t>(header.size() >> 8));
    v.insert(v.end(), header.begin(), header.end());
    v.resize(v.size() + bytes, 1);
    return v;
  };
  std::vector<std::uint8_t> arrays{5};
  piece(arrays, npy("|u1", "(2, 3)", 6));
  const auto y = npy("|u1", "(2,)", 2);  // labels 1 and 1
  arrays.insert(arrays.end(), y.begin(), y.end());
  write(dir, 5, arrays);
}

// Puts on both ends, takes that match them, a hold, a release and a scribble.
void write_shm_seeds(const std::filesystem::path& dir) {
  const auto body = psgd::encode_body(psgd::Message(psgd::Finish{.status = "completed"}));
  std::vector<std::uint8_t> seed{0};
  piece(seed, body);
  seed.push_back(2);  // the opener takes slot 0, as a Finish, and holds it
  seed.push_back(0);
  for (int i = 0; i < 4; ++i)
    seed.push_back(static_cast<std::uint8_t>(body.size() >> (8 * i)));
  seed.push_back(psgd::fuzz::selector_of(psgd::MessageType::kFinish));
  seed.push_back(1);
  seed.push_back(4), seed.push_back(0);  // release it
  seed.push_back(1);
  piece(seed, body);
  seed.insert(seed.end(),
              {3, 0, 4, 0, 0, 0, psgd::fuzz::selector_of(psgd::MessageType::kFinish), 0});
  seed.insert(seed.end(), {5, 0, 0, 0, 0, 2, 0, 0xff, 0xff});
  write(dir, 0, seed);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path out = argv[1];
  std::vector<float> grad(40);
  for (std::size_t i = 0; i < grad.size(); ++i)
    grad[i] = static_cast<float>(i) * 0.25f - 3.0f;
  const auto payload = psgd::make_codec({.name = "plain"})->encode(grad);
  const std::vector<psgd::Message> messages{
      psgd::ErrorMessage{"refused"},
      psgd::AuthHello{
          .nonce = std::vector<std::uint8_t>(32, 7), .identity = "host:42", .has_key = true},
      psgd::AuthChallenge{.nonce = std::vector<std::uint8_t>(32, 9),
                          .proof = std::vector<std::uint8_t>(32, 1),
                          .required = true,
                          .job_id = "0123456789abcdef0123456789abcdef",
                          .server_id = "fedcba9876543210"},
      psgd::AuthProof{.proof = std::vector<std::uint8_t>(32, 2)},
      psgd::AuthOk{},
      psgd::Hello{.host = "host", .pid = 42, .cores = 2, .version = "abc"},
      psgd::Job{.worker_id = 1,
                .spec_json = "{}",
                .samples = {1, 2, 3},
                .num_parameters = 40,
                .norm_shift = {0.5f},
                .norm_scale = {2.0f},
                .train_size = 100,
                .worker_state = {4, 5, 6},
                .test_salt = "00112233",
                .test_hashes = {7, 8}},
      psgd::Ready{.worker_id = 1, .num_parameters = 40, .samples = 3, .detail = "blas"},
      psgd::Finish{.status = "completed"},
      psgd::DataOffer{.hash = "abcd", .rows_sha256 = "ef01", .dataset = "csv:x", .why = "no"},
      psgd::LocalData{.samples = 3,
                      .label_histogram = {1, 2},
                      .shape = {1, 28, 28, 0},
                      .test_rows = 0,
                      .dataset = "idx:/data/w0"},
      psgd::LocalPlan{.train_size = 100, .classes = 10, .shape = {1, 28, 28, 0}},
      psgd::DataChunk{
          .index = 0, .count = 1, .total_bytes = 3, .raw_bytes = 3, .compressed = {1, 2, 3}},
      psgd::Params{.iteration = 3, .values = payload},
      psgd::Gradient{.iteration = 3, .values = payload, .loss = 0.5, .samples = 32},
      psgd::ModelDelta{.iteration = 3, .values = payload, .local_steps = 4},
      psgd::PeerTable{},
      psgd::PeerHello{},
      psgd::PeersUp{},
      psgd::Leave{.why = "interrupted by SIGTERM"},
      psgd::StateRequest{},
      psgd::WorkerState{.iteration = 10, .state = {1, 2, 3}, .params = {1.0f, 2.0f}},
      psgd::WorkerLog{.log = "worker 0 of 2\n", .trace = "0.1,1,0,2.3,32,100,200\n", .last = true},
      psgd::LogRequest{},
      psgd::RingChunk{.round = 1, .step = 0, .chunk = 0, .values = {1.0f, 2.0f}},
      psgd::AllreduceReport{.iteration = 1, .loss = 0.5, .samples = 32},
      psgd::RingHalt{.generation = 1},
      psgd::RingHalted{.generation = 1, .iteration = 3, .params = {1.0f}, .state = {1, 2}},
      psgd::RingReform{.generation = 1, .iteration = 3, .members = {0, 2}},
      psgd::PeerGradient{.from = 1, .iteration = 2, .values = payload},
      psgd::CcdcCoded{.from = 1, .iteration = 2, .group = 3, .bits = {1u, 2u}},
      psgd::CcdcSlice{.from = 1, .iteration = 2, .values = {1.0f, 2.0f}}};
  const std::vector<psgd::LinkMessage> link_messages{
      psgd::ShmOffer{.name = "/psgd-1-0123456789abcdef", .slot_bytes = 4096, .slots = 3},
      psgd::ShmReply{.accepted = false, .why = "off"},
      psgd::ShmFrame{.slot = 1, .type = 17, .body_bytes = 100}};
  int i = 0;
  const auto add_seed = [&](const auto& m) {
    write(out / "fuzz_frame", i, psgd::encode_frame(m));
    auto body = psgd::encode_body(m);
    body.insert(body.begin(), psgd::fuzz::selector_of(psgd::type_of(m)));
    write(out / "fuzz_message", i, body);
    ++i;
  };
  for (const auto& m : messages)
    add_seed(m);
  for (const auto& m : link_messages)
    add_seed(m);
  // Every type of the message list, default-constructed: a type added to the list has a valid
  // seed without an entry above.
  psgd::for_each_type(psgd::AllMessageTypes{}, [&](auto type) {
    using T = typename decltype(type)::type;
    if constexpr (psgd::MessageTraits<T>::channel == psgd::Channel::kLink) {
      add_seed(psgd::LinkMessage(T{}));
    } else {
      add_seed(psgd::Message(T{}));
    }
  });
  const auto specs = psgd::fuzz::codec_specs();
  for (std::uint8_t k = 0; k < specs.size(); ++k) {
    const psgd::CodecSpec& spec = specs[k];
    const auto p = psgd::make_codec(spec)->encode(grad);
    std::vector<std::uint8_t> seed{k, static_cast<std::uint8_t>(grad.size())};
    seed.insert(seed.end(), p.bytes.begin(), p.bytes.end());
    write(out / "fuzz_payload", k, seed);
  }
  // A checkpoint of a small ssgd job, with a real ssgd server state after two rounds' worth of
  // bookkeeping (restore() is what fuzz_checkpoint feeds it to).
  {
    std::vector<float> params(8, 0.25f);
    psgd::SteadyClock clock;
    psgd::SsgdServer server(psgd::Schedule{.node_count = 2, .iterations_per_epoch = 8, .epochs = 2},
                            psgd::ServerContext{.parameters = params,
                                                .optimizer = psgd::OptimizerSpec{.momentum = 0.9},
                                                .clock = &clock});
    psgd::Checkpoint c{
        .header = {.model = "mlp",
                   .num_parameters = params.size(),
                   .config_hash = std::string(64, 'c'),  // 64 hex digits, as job_config_hash()
                   .strategy = "ssgd"},
        .iteration = 0,
        .epochs_done = 0,
        .parameters = params,
        .role_state = server.snapshot(),
        .worker_batches = {0, 0},
        .driver_state = R"({"recorder":{"epoch":0},"events":[]})"};
    write(out / "fuzz_checkpoint", 0, psgd::encode_checkpoint(c));
  }
  write_handshake_seeds(out / "fuzz_handshake");
  write_shipping_seeds(out / "fuzz_shipping");
  write_worker_log_seeds(out / "fuzz_worker_log");
  write_dataset_seeds(out / "fuzz_dataset");
  write_shm_seeds(out / "fuzz_shm");
  return 0;
}
