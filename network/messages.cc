#include "network/messages.h"

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "network/archive.h"
#include "network/messages/link.h"

namespace psgd {

// --- What the messages are made of.

// Layout: element count, then the bytes as a vector (size tag, bytes).
template <wire::Output Archive>
void save(Archive& ar, const Payload& p) {
  const auto bytes = p.view();
  ar(p.num_elements, cereal::make_size_tag(static_cast<cereal::size_type>(bytes.size())),
     cereal::binary_data(bytes.data(), bytes.size()));
}
// A frame read by a Connection is owned by the archive: the payload views it (no copy, no zero
// fill of a model-sized buffer). Otherwise the bytes are copied once.
void load(wire::InputArchive& ar, Payload& p) {
  ar(p.num_elements);
  cereal::size_type size = 0;
  ar(cereal::make_size_tag(size));
  const auto bytes = ar.take(size);
  if (ar.owner()) {
    p.received = bytes;
    p.frame = ar.owner();
  } else {
    p.bytes.assign(bytes.begin(), bytes.end());
  }
}

template <class Archive>
void serialize(Archive& ar, PhaseTimes& t) {
  ar(t.compute_s, t.encode_s, t.wait_s, t.decode_s, t.apply_s);
}

// --- One serialize (or save and load) per message type, in the order of PSGD_MESSAGE_TYPES.
// Changing one changes the protocol (kProtocolVersion).

// Orchestration (network/messages/orchestration.h).

// The body is the text itself, no size tag: readable by a peer of any protocol version.
template <wire::Output Archive>
void save(Archive& ar, const ErrorMessage& m) {
  ar(cereal::binary_data(m.text.data(), m.text.size()));
}
void load(wire::InputArchive& ar, ErrorMessage& m) {
  const auto text = ar.take(ar.remaining());
  m.text.assign(text.begin(), text.end());
}
template <class Archive>
void serialize(Archive& ar, Hello& m) {
  ar(m.protocol, m.host, m.pid, m.cores, m.threads, m.version, m.slowdown, m.dead_after);
}
template <class Archive>
void serialize(Archive& ar, Job& m) {
  ar(m.worker_id, m.spec_json, m.samples, m.threads, m.num_parameters, m.data_hash, m.norm_shift,
     m.norm_scale, m.train_size, m.block_ids, m.block_sizes, m.start_batch, m.worker_state,
     m.model_file, m.model_sha256, m.test_salt, m.test_hashes);
}
template <class Archive>
void serialize(Archive& ar, LocalData& m) {
  ar(m.samples, m.label_histogram, m.shape, m.test_rows, m.dataset);
}
template <class Archive>
void serialize(Archive& ar, LocalPlan& m) {
  ar(m.train_size, m.classes, m.shape);
}
template <class Archive>
void serialize(Archive& ar, Ready& m) {
  ar(m.worker_id, m.num_parameters, m.samples, m.threads, m.detail, m.peer_port, m.data_sha256,
     m.dataset);
}
template <class Archive>
void serialize(Archive& ar, Finish& m) {
  ar(m.status, m.ok);
}
template <class Archive>
void serialize(Archive& ar, DataOffer& m) {
  ar(m.hash, m.rows_sha256, m.dataset, m.why);
}
template <class Archive>
void serialize(Archive& ar, DataChunk& m) {
  ar(m.index, m.count, m.total_bytes, m.total_sha256, m.raw_bytes, m.sha256, m.compressed);
}
template <class Archive>
void serialize(Archive& ar, PeerTable& m) {
  ar(m.hosts, m.ports, m.key);
}
template <class Archive>
void serialize(Archive& ar, PeerHello& m) {
  ar(m.worker, m.node_count, m.nonce, m.proof);
}
template <class Archive>
void serialize(Archive& ar, PeersUp& m) {
  ar(m.links);
}
template <class Archive>
void serialize(Archive& ar, Leave& m) {
  ar(m.why);
}
template <class Archive>
void serialize(Archive&, StateRequest&) {}
template <class Archive>
void serialize(Archive& ar, WorkerState& m) {
  ar(m.iteration, m.state, m.params);
}
template <class Archive>
void serialize(Archive& ar, WorkerLog& m) {
  ar(m.log, m.trace, m.last);
}
template <class Archive>
void serialize(Archive&, LogRequest&) {}

// Authentication (network/messages/auth.h).
template <class Archive>
void serialize(Archive& ar, AuthHello& m) {
  ar(m.protocol, m.nonce, m.identity, m.has_key);
}
template <class Archive>
void serialize(Archive& ar, AuthChallenge& m) {
  ar(m.nonce, m.proof, m.required, m.job_id, m.server_id, m.dead_after);
}
template <class Archive>
void serialize(Archive& ar, AuthProof& m) {
  ar(m.proof);
}
template <class Archive>
void serialize(Archive&, AuthOk&) {}

// Strategy (network/messages/strategy.h).
template <class Archive>
void serialize(Archive& ar, Params& m) {
  ar(m.iteration, m.values);
}
template <class Archive>
void serialize(Archive& ar, Gradient& m) {
  ar(m.iteration, m.values, m.loss, m.samples, m.times, m.compression_error, m.buffers);
}
template <class Archive>
void serialize(Archive& ar, ModelDelta& m) {
  ar(m.iteration, m.values, m.loss, m.samples, m.local_steps, m.times, m.buffers);
}
// The layout of `ar(round, step, chunk, std::vector<float>)`, from wherever the values live.
template <wire::Output Archive>
void save(Archive& ar, const RingChunk& m) {
  const auto bytes = m.bytes();
  ar(m.round, m.step, m.chunk, cereal::make_size_tag(static_cast<cereal::size_type>(m.size())),
     cereal::binary_data(bytes.data(), bytes.size()));
}
// A frame read by a Connection is viewed, not copied (see Payload's load above).
void load(wire::InputArchive& ar, RingChunk& m) {
  ar(m.round, m.step, m.chunk);
  cereal::size_type count = 0;
  ar(cereal::make_size_tag(count));  // checked: count <= bytes left, so count * 4 cannot overflow
  const auto bytes = ar.take(count * sizeof(float));
  if (ar.owner()) {
    m.viewed = true;
    m.view = bytes;
    m.owner = ar.owner();
  } else {
    m.values.resize(count);
    if (count) std::memcpy(m.values.data(), bytes.data(), bytes.size());
  }
}
template <class Archive>
void serialize(Archive& ar, AllreduceReport& m) {
  ar(m.iteration, m.loss, m.samples, m.times, m.peer_bytes, m.multicast_bytes, m.param_hash,
     m.params, m.buffers);
}
template <class Archive>
void serialize(Archive& ar, RingHalt& m) {
  ar(m.generation);
}
template <class Archive>
void serialize(Archive& ar, RingHalted& m) {
  ar(m.generation, m.iteration, m.params, m.state);
}
template <class Archive>
void serialize(Archive& ar, RingReform& m) {
  ar(m.generation, m.iteration, m.members, m.params, m.state);
}
template <class Archive>
void serialize(Archive& ar, PeerGradient& m) {
  ar(m.from, m.iteration, m.values);
}
template <class Archive>
void serialize(Archive& ar, CcdcCoded& m) {
  ar(m.from, m.iteration, m.group, m.bits);
}
template <class Archive>
void serialize(Archive& ar, CcdcSlice& m) {
  ar(m.from, m.iteration, m.values);
}

// Link (network/messages/link.h).
template <class Archive>
void serialize(Archive&, Heartbeat&) {}
template <class Archive>
void serialize(Archive& ar, ShmOffer& m) {
  ar(m.name, m.slot_bytes, m.slots);
}
template <class Archive>
void serialize(Archive& ar, ShmReply& m) {
  ar(m.accepted, m.why);
}
template <class Archive>
void serialize(Archive& ar, ShmFrame& m) {
  ar(m.slot, m.type, m.body_bytes);
}

// --- Everything below follows the list.

namespace {

template <class T>
T decode_as(std::span<const std::uint8_t> body, const std::shared_ptr<const void>& owner) {
  wire::InputArchive ar(body, owner);
  T value;
  ar(value);
  if (ar.remaining() != 0) {
    throw ProtocolError(fmt::format("{} trailing bytes after a {} message", ar.remaining(),
                                    MessageTraits<T>::name));
  }
  return value;
}

// What the list gives each variant of messages: the wire ids of its alternatives, in order, and a
// decoder for them.
template <class Variant>
struct Alternatives;
template <class... Ts>
struct Alternatives<std::variant<Ts...>> {
  static constexpr std::array<MessageType, sizeof...(Ts)> types{MessageTraits<Ts>::type...};

  // The alternative whose wire id is `type`, decoded from `body`; nullopt when there is none.
  static std::optional<std::variant<Ts...>> decode(MessageType type,
                                                   std::span<const std::uint8_t> body,
                                                   const std::shared_ptr<const void>& owner) {
    std::optional<std::variant<Ts...>> out;
    (void)((type == MessageTraits<Ts>::type &&
            (out.emplace(std::in_place_type<Ts>, decode_as<Ts>(body, owner)), true)) ||
           ...);
    return out;
  }
};

template <class Variant>
void append_any(const Variant& message, std::vector<std::uint8_t>& out,
                std::vector<wire::Blob>* blobs) {
  wire::OutputArchive ar(out, blobs);
  std::visit([&](const auto& m) { ar(m); }, message);
}

template <class Variant>
std::size_t size_any(const Variant& message) {
  wire::SizeArchive ar;
  std::visit([&](const auto& m) { ar(m); }, message);
  return ar.bytes();
}

}  // namespace

MessageType type_of(const Message& message) {
  return Alternatives<Message>::types[message.index()];
}

std::vector<std::uint8_t> encode_body(const Message& message) {
  std::vector<std::uint8_t> out;
  append_body(message, out);
  return out;
}

void append_body(const Message& message, std::vector<std::uint8_t>& out,
                 std::vector<wire::Blob>* blobs) {
  append_any(message, out, blobs);
}

std::size_t body_size(const Message& message) {
  return size_any(message);
}

Message decode_body(MessageType type, std::span<const std::uint8_t> body) {
  return decode_body(type, body, nullptr);
}

Message decode_body(MessageType type, std::span<const std::uint8_t> body,
                    const std::shared_ptr<const void>& owner) {
  auto message = Alternatives<Message>::decode(type, body, owner);
  if (!message) {
    if (is_link(type)) {
      throw ProtocolError(
          fmt::format("a {} is a link message, handled by the connection alone", type_name(type)));
    }
    throw ProtocolError(fmt::format("unknown message type {}", static_cast<int>(type)));
  }
  return std::move(*message);
}

MessageType type_of(const LinkMessage& message) {
  return Alternatives<LinkMessage>::types[message.index()];
}

std::vector<std::uint8_t> encode_body(const LinkMessage& message) {
  std::vector<std::uint8_t> out;
  append_body(message, out);
  return out;
}

void append_body(const LinkMessage& message, std::vector<std::uint8_t>& out) {
  append_any(message, out, nullptr);
}

std::size_t body_size(const LinkMessage& message) {
  return size_any(message);
}

LinkMessage decode_link_body(MessageType type, std::span<const std::uint8_t> body) {
  auto message = Alternatives<LinkMessage>::decode(type, body, nullptr);
  if (!message) {
    throw ProtocolError(fmt::format("message type {} ({}) is not a link message",
                                    static_cast<int>(type), type_name(type)));
  }
  return std::move(*message);
}

}  // namespace psgd
