#include "network/messages.h"

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstring>

#include "core/error.h"
#include "network/archive.h"

namespace psgd {

// Layout: element count, then the bytes as a vector (size tag, bytes).
void save(wire::OutputArchive& ar, const Payload& p) {
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
template <class Archive>
void serialize(Archive& ar, AuthHello& m) {
  ar(m.protocol, m.nonce, m.identity, m.has_key);
}
template <class Archive>
void serialize(Archive& ar, AuthChallenge& m) {
  ar(m.nonce, m.proof, m.required);
}
template <class Archive>
void serialize(Archive& ar, AuthProof& m) {
  ar(m.proof);
}
template <class Archive>
void serialize(Archive&, Heartbeat&) {}
template <class Archive>
void serialize(Archive&, AuthOk&) {}
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
template <class Archive>
void serialize(Archive& ar, Hello& m) {
  ar(m.protocol, m.host, m.pid, m.cores, m.threads, m.version, m.slowdown);
}
template <class Archive>
void serialize(Archive& ar, Job& m) {
  ar(m.worker_id, m.spec_json, m.samples, m.threads, m.num_parameters, m.data_hash, m.norm_shift,
     m.norm_scale, m.train_size, m.block_ids, m.block_sizes, m.start_batch);
}
template <class Archive>
void serialize(Archive& ar, Ready& m) {
  ar(m.worker_id, m.num_parameters, m.samples, m.threads, m.detail, m.peer_port);
}
template <class Archive>
void serialize(Archive& ar, Finish& m) {
  ar(m.status, m.ok);
}
template <class Archive>
void serialize(Archive& ar, DataOffer& m) {
  ar(m.hash);
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
// The layout of `ar(round, step, chunk, std::vector<float>)`, from wherever the values live.
void save(wire::OutputArchive& ar, const RingChunk& m) {
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
     m.params);
}
template <class Archive>
void serialize(Archive& ar, CcdcCoded& m) {
  ar(m.from, m.iteration, m.group, m.bits);
}
template <class Archive>
void serialize(Archive& ar, CcdcSlice& m) {
  ar(m.from, m.iteration, m.values);
}
template <class Archive>
void serialize(Archive& ar, PeerGradient& m) {
  ar(m.from, m.iteration, m.values);
}
template <class Archive>
void serialize(Archive& ar, Params& m) {
  ar(m.iteration, m.values);
}
template <class Archive>
void serialize(Archive& ar, Gradient& m) {
  ar(m.iteration, m.values, m.loss, m.samples, m.times, m.compression_error);
}
template <class Archive>
void serialize(Archive& ar, ModelDelta& m) {
  ar(m.iteration, m.values, m.loss, m.samples, m.local_steps, m.times);
}

namespace {

template <class T>
Message decode_as(std::span<const std::uint8_t> body, const std::shared_ptr<const void>& owner) {
  wire::InputArchive ar(body, owner);
  T value;
  ar(value);
  if (ar.remaining() != 0) {
    throw ProtocolError(fmt::format("{} trailing bytes after a {} message", ar.remaining(),
                                    type_name(type_of(Message(T{})))));
  }
  return value;
}

}  // namespace

MessageType type_of(const Message& message) {
  struct Visitor {
    MessageType operator()(const ErrorMessage&) const { return MessageType::kError; }
    MessageType operator()(const Hello&) const { return MessageType::kHello; }
    MessageType operator()(const Job&) const { return MessageType::kJob; }
    MessageType operator()(const Ready&) const { return MessageType::kReady; }
    MessageType operator()(const Finish&) const { return MessageType::kFinish; }
    MessageType operator()(const Params&) const { return MessageType::kParams; }
    MessageType operator()(const Gradient&) const { return MessageType::kGradient; }
    MessageType operator()(const ModelDelta&) const { return MessageType::kModelDelta; }
    MessageType operator()(const DataOffer&) const { return MessageType::kDataOffer; }
    MessageType operator()(const DataChunk&) const { return MessageType::kDataChunk; }
    MessageType operator()(const PeerTable&) const { return MessageType::kPeerTable; }
    MessageType operator()(const PeerHello&) const { return MessageType::kPeerHello; }
    MessageType operator()(const PeersUp&) const { return MessageType::kPeersUp; }
    MessageType operator()(const RingChunk&) const { return MessageType::kRingChunk; }
    MessageType operator()(const AllreduceReport&) const { return MessageType::kAllreduceReport; }
    MessageType operator()(const PeerGradient&) const { return MessageType::kPeerGradient; }
    MessageType operator()(const CcdcCoded&) const { return MessageType::kCcdcCoded; }
    MessageType operator()(const CcdcSlice&) const { return MessageType::kCcdcSlice; }
    MessageType operator()(const AuthHello&) const { return MessageType::kAuthHello; }
    MessageType operator()(const AuthChallenge&) const { return MessageType::kAuthChallenge; }
    MessageType operator()(const AuthProof&) const { return MessageType::kAuthProof; }
    MessageType operator()(const Heartbeat&) const { return MessageType::kHeartbeat; }
    MessageType operator()(const AuthOk&) const { return MessageType::kAuthOk; }
    MessageType operator()(const ShmOffer&) const { return MessageType::kShmOffer; }
    MessageType operator()(const ShmReply&) const { return MessageType::kShmReply; }
    MessageType operator()(const ShmFrame&) const { return MessageType::kShmFrame; }
  };
  return std::visit(Visitor{}, message);
}

const char* type_name(MessageType type) {
  switch (type) {
    case MessageType::kError:
      return "Error";
    case MessageType::kHello:
      return "Hello";
    case MessageType::kJob:
      return "Job";
    case MessageType::kReady:
      return "Ready";
    case MessageType::kFinish:
      return "Finish";
    case MessageType::kParams:
      return "Params";
    case MessageType::kGradient:
      return "Gradient";
    case MessageType::kModelDelta:
      return "ModelDelta";
    case MessageType::kDataOffer:
      return "DataOffer";
    case MessageType::kDataChunk:
      return "DataChunk";
    case MessageType::kPeerTable:
      return "PeerTable";
    case MessageType::kPeerHello:
      return "PeerHello";
    case MessageType::kPeersUp:
      return "PeersUp";
    case MessageType::kRingChunk:
      return "RingChunk";
    case MessageType::kAllreduceReport:
      return "AllreduceReport";
    case MessageType::kPeerGradient:
      return "PeerGradient";
    case MessageType::kCcdcCoded:
      return "CcdcCoded";
    case MessageType::kCcdcSlice:
      return "CcdcSlice";
    case MessageType::kAuthHello:
      return "AuthHello";
    case MessageType::kAuthChallenge:
      return "AuthChallenge";
    case MessageType::kAuthProof:
      return "AuthProof";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kAuthOk:
      return "AuthOk";
    case MessageType::kShmOffer:
      return "ShmOffer";
    case MessageType::kShmReply:
      return "ShmReply";
    case MessageType::kShmFrame:
      return "ShmFrame";
  }
  return "unknown";
}

std::vector<std::uint8_t> encode_body(const Message& message) {
  std::vector<std::uint8_t> out;
  append_body(message, out);
  return out;
}

void append_body(const Message& message, std::vector<std::uint8_t>& out,
                 std::vector<wire::Blob>* blobs) {
  if (const auto* err = std::get_if<ErrorMessage>(&message)) {
    out.insert(out.end(), err->text.begin(), err->text.end());
    return;
  }
  wire::OutputArchive ar(out, blobs);
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (!std::is_same_v<T, ErrorMessage>) ar(const_cast<T&>(m));
      },
      message);
}

Message decode_body(MessageType type, std::span<const std::uint8_t> body) {
  return decode_body(type, body, nullptr);
}

Message decode_body(MessageType type, std::span<const std::uint8_t> body,
                    const std::shared_ptr<const void>& owner) {
  switch (type) {
    case MessageType::kError:
      return ErrorMessage{std::string(body.begin(), body.end())};
    case MessageType::kHello:
      return decode_as<Hello>(body, owner);
    case MessageType::kJob:
      return decode_as<Job>(body, owner);
    case MessageType::kReady:
      return decode_as<Ready>(body, owner);
    case MessageType::kFinish:
      return decode_as<Finish>(body, owner);
    case MessageType::kParams:
      return decode_as<Params>(body, owner);
    case MessageType::kGradient:
      return decode_as<Gradient>(body, owner);
    case MessageType::kModelDelta:
      return decode_as<ModelDelta>(body, owner);
    case MessageType::kDataOffer:
      return decode_as<DataOffer>(body, owner);
    case MessageType::kDataChunk:
      return decode_as<DataChunk>(body, owner);
    case MessageType::kPeerTable:
      return decode_as<PeerTable>(body, owner);
    case MessageType::kPeerHello:
      return decode_as<PeerHello>(body, owner);
    case MessageType::kPeersUp:
      return decode_as<PeersUp>(body, owner);
    case MessageType::kRingChunk:
      return decode_as<RingChunk>(body, owner);
    case MessageType::kAllreduceReport:
      return decode_as<AllreduceReport>(body, owner);
    case MessageType::kPeerGradient:
      return decode_as<PeerGradient>(body, owner);
    case MessageType::kCcdcCoded:
      return decode_as<CcdcCoded>(body, owner);
    case MessageType::kCcdcSlice:
      return decode_as<CcdcSlice>(body, owner);
    case MessageType::kAuthHello:
      return decode_as<AuthHello>(body, owner);
    case MessageType::kAuthChallenge:
      return decode_as<AuthChallenge>(body, owner);
    case MessageType::kAuthProof:
      return decode_as<AuthProof>(body, owner);
    case MessageType::kHeartbeat:
      return decode_as<Heartbeat>(body, owner);
    case MessageType::kAuthOk:
      return decode_as<AuthOk>(body, owner);
    case MessageType::kShmOffer:
      return decode_as<ShmOffer>(body, owner);
    case MessageType::kShmReply:
      return decode_as<ShmReply>(body, owner);
    case MessageType::kShmFrame:
      return decode_as<ShmFrame>(body, owner);
  }
  throw ProtocolError(fmt::format("unknown message type {}", static_cast<int>(type)));
}

}  // namespace psgd
