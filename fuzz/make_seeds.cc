// Writes seed corpora for the fuzz targets: a valid frame (fuzz_frame), a type byte + body
// (fuzz_message) of every message type of the list (network/messages.h), encoded payloads
// (fuzz_payload) and a checkpoint (fuzz_checkpoint).
//   make_seeds OUT_DIR -> OUT_DIR/{fuzz_frame,fuzz_message,fuzz_payload,fuzz_checkpoint}/seed-*
#include <filesystem>
#include <fstream>
#include <vector>

#include "codecs/factory.h"
#include "fuzz/codec_specs.h"
#include "fuzz/message_types.h"
#include "network/frame.h"
#include "network/messages.h"
#include "network/messages/link.h"
#include "psgd/checkpoint.h"
#include "psgd/ssgd.h"

namespace {

void write(const std::filesystem::path& dir, int i, const std::vector<std::uint8_t>& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
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
                .train_size = 100},
      psgd::Ready{.worker_id = 1, .num_parameters = 40, .samples = 3, .detail = "blas"},
      psgd::Finish{.status = "completed"},
      psgd::DataOffer{.hash = "abcd"},
      psgd::DataChunk{
          .index = 0, .count = 1, .total_bytes = 3, .raw_bytes = 3, .compressed = {1, 2, 3}},
      psgd::Params{.iteration = 3, .values = payload},
      psgd::Gradient{.iteration = 3, .values = payload, .loss = 0.5, .samples = 32},
      psgd::ModelDelta{.iteration = 3, .values = payload, .local_steps = 4},
      psgd::PeerTable{},
      psgd::PeerHello{},
      psgd::PeersUp{},
      psgd::Leave{.why = "interrupted by SIGTERM"},
      psgd::RingChunk{.round = 1, .step = 0, .chunk = 0, .values = {1.0f, 2.0f}},
      psgd::AllreduceReport{.iteration = 1, .loss = 0.5, .samples = 32},
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
    psgd::SsgdServer server(
        psgd::Schedule{.node_count = 2, .iterations_per_epoch = 8, .epochs = 2},
        psgd::ServerContext{.parameters = params, .sgd = {.momentum = 0.9f}, .clock = &clock});
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
  return 0;
}
