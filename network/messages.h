#pragma once
// The messages psgd processes exchange: the one list of message types, and their wire encoding.
//
// Every message travels in one frame (network/frame.h): a 16-byte header naming its type and
// length, then the Cereal-serialised body (network/messages.cc). ErrorMessage is the exception:
// its body is raw UTF-8 so that a peer of ANY protocol version can read why it was refused.
//
// Messages belong to one of four channels, each declared in its own header:
//
//   link (network/messages/link.h): between the two ends of one TCP link, handled inside
//     net::Connection. They form LinkMessage, not Message: the link's owner never sees them.
//       Heartbeat       either way, once the handshake is done, on a link idle for
//                       --heartbeat_interval (shortened to a third of the other side's
//                       --dead_after, told in the handshake: network/liveness.h)
//       ShmOffer        either way, to a peer on the same machine: a shared-memory segment
//       ShmReply        the answer: mapped, or why not
//       ShmFrame        in place of a frame whose body went through a shared-memory slot
//   auth (network/messages/auth.h, network/auth.h): the first frames on a worker's server link.
//       worker -> server AuthHello, server -> worker AuthChallenge, worker -> server AuthProof,
//       server -> worker AuthOk (or ErrorMessage, then close)
//   orchestration (network/messages/orchestration.h, experiments/): the job around the training.
//       Hello -> Job -> Ready ... Finish, ErrorMessage at any time; a worker that is told to stop
//       (SIGTERM, SIGINT) says Leave and closes.
//       With --ship_data: Hello -> Job -> DataOffer -> DataChunk x n -> Ready ...
//       With --local_data: Hello -> Job -> LocalData -> (every worker's in) LocalPlan -> Ready ...
//       Peer-to-peer strategies: ... Ready -> PeerTable -> the workers link up (PeerHello first
//       on each worker-to-worker link) -> PeersUp -> training.
//       Checkpoints (--checkpoint_every): StateRequest -> WorkerState (parameter server), or
//       WorkerState unasked at each checkpoint iteration (peer-to-peer).
//       Results: WorkerLog pieces (the worker's log and per-batch trace) from Job on; at the end
//       LogRequest -> WorkerLog with last set (experiments/worker_results.h).
//   strategy (network/messages/strategy.h, psgd/ roles): the training itself.
//       Parameter server: Params (server -> worker), Gradient or ModelDelta (worker -> server).
//       allreduce: RingChunk (worker -> next worker), AllreduceReport (worker -> server);
//       after a lost worker (--allreduce_on_loss shrink) RingHalt (server -> worker),
//       RingHalted (worker -> server), RingReform (server -> worker).
//       broadcast: PeerGradient (worker -> every other worker); with --codec ccdc CcdcCoded and
//       CcdcSlice instead (worker -> other workers), AllreduceReport (worker -> server).
//
// Protocol versions and what each changed: kProtocolChanges below; a peer of another version is
// refused with both versions named (network/frame.h).
//
// Adding a message: one entry in PSGD_MESSAGE_TYPES below, its struct in its channel's header,
// its serialize function in network/messages.cc, and an entry in kProtocolChanges. The enum, the
// variants, type_of, type_name, known_type, decoding, frame sizes, the round-trip tests and the
// fuzz targets' tables all follow the list.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

namespace psgd {

// Bump whenever a message layout, a wire id or the frame header changes, and say what changed in
// kProtocolChanges (the build checks that its last entry is this version).
inline constexpr std::uint16_t kProtocolVersion = 21;

struct ProtocolChange {
  std::uint16_t version;
  const char* what;
};
inline constexpr ProtocolChange kProtocolChanges[] = {
    {1, "the first"},
    {2, "Gradient.compression_error"},
    {3, "ModelDelta, Hello.slowdown"},
    {4, "DataOffer, DataChunk (--ship_data)"},
    {5, "Ready.peer_port, PeerTable, PeerHello, PeersUp, RingChunk, AllreduceReport, PeerGradient"},
    {6, "Job.block_ids, Job.block_sizes (gc, ndc)"},
    {7, "AuthHello, AuthChallenge, AuthProof, AuthOk (network/auth.h), Heartbeat"},
    {8, "CcdcCoded, CcdcSlice, AllreduceReport.multicast_bytes (--codec ccdc, psgd/coded/ccdc.h)"},
    {9, "Job.start_batch (a worker resuming a checkpoint or taking over a lost worker's slot)"},
    {10, "ShmOffer, ShmReply, ShmFrame (shared-memory frames, network/tcp/shm_channel.h)"},
    {11, "AuthChallenge.job_id, AuthChallenge.server_id (the job's identity), Leave"},
    {12, "Ready.data_sha256, Ready.dataset (a worker proves which rows it holds)"},
    {13,
     "StateRequest, WorkerState, Job.worker_state (every strategy checkpoints its workers' "
     "state)"},
    {14,
     "Job.model_file, Job.model_sha256 (--model script:FILE); Gradient.buffers, "
     "ModelDelta.buffers, AllreduceReport.buffers (a model's buffers, BatchNorm's statistics)"},
    {15, "RingHalt, RingHalted, RingReform (--allreduce_on_loss shrink, psgd/allreduce.h)"},
    {16, "WorkerLog, LogRequest (each worker's log and per-batch trace reach the run directory)"},
    {17, "DataOffer.rows_sha256, DataOffer.dataset, DataOffer.why (--ship_data auto)"},
    {18,
     "LocalData, LocalPlan, Job.test_salt, Job.test_hashes (--local_data: each worker trains on "
     "its own file)"},
    {19,
     "LocalPlan.shape (--local_data: a worker's file with as many features per sample as the "
     "model, e.g. a CSV beside an image server, takes the model's shape)"},
    {20,
     "AuthChallenge.dead_after, Hello.dead_after (each end of a worker's link beats within the "
     "other's --dead_after, network/liveness.h)"},
    {21,
     "WorkerState.state and Job.worker_state hold the worker's model buffers after its role's "
     "snapshot (experiments/worker_setup.h), so a resumed worker keeps BatchNorm's statistics"},
};
namespace detail {
constexpr bool protocol_changes_complete() {
  std::uint16_t expected = 1;
  for (const ProtocolChange& change : kProtocolChanges)
    if (change.version != expected++) return false;
  return expected - 1 == kProtocolVersion;
}
}  // namespace detail
static_assert(detail::protocol_changes_complete(),
              "kProtocolChanges must say what each version up to kProtocolVersion changed");

// Which part of psgd sends and handles a message (the channels of the comment above).
enum class Channel : std::uint8_t { kLink, kAuth, kOrchestration, kStrategy };

// The list: X(Struct, Name, wire id, Channel) per message type. Name gives the enumerator
// MessageType::k<Name> and type_name(); the wire id is the frame header's type field, so an id is
// never renumbered or reused (that would be a protocol change). The order is the order of the
// variants' alternatives (ErrorMessage first: a default Message is an ErrorMessage) and of the
// fuzz targets' selector tables.
//
// An X-macro rather than a type list with traits, because only the preprocessor can write
// enumerators and name strings: with a type list, each type would need its enumerator, its traits
// specialisation and its list entry written in three places. The macro is expanded only here, into
// the enum, one MessageTraits specialisation per type and the type list AllMessageTypes; everything
// else (variants, decoding, tables, tests) is ordinary templates over that type list.
#define PSGD_MESSAGE_TYPES(X)                       \
  X(ErrorMessage, Error, 1, Orchestration)          \
  X(Hello, Hello, 2, Orchestration)                 \
  X(Job, Job, 3, Orchestration)                     \
  X(Ready, Ready, 4, Orchestration)                 \
  X(Finish, Finish, 5, Orchestration)               \
  X(DataOffer, DataOffer, 6, Orchestration)         \
  X(DataChunk, DataChunk, 7, Orchestration)         \
  X(PeerTable, PeerTable, 8, Orchestration)         \
  X(PeerHello, PeerHello, 9, Orchestration)         \
  X(PeersUp, PeersUp, 10, Orchestration)            \
  X(Leave, Leave, 30, Orchestration)                \
  X(StateRequest, StateRequest, 23, Orchestration)  \
  X(WorkerState, WorkerState, 24, Orchestration)    \
  X(WorkerLog, WorkerLog, 31, Orchestration)        \
  X(LogRequest, LogRequest, 32, Orchestration)      \
  X(LocalData, LocalData, 33, Orchestration)        \
  X(LocalPlan, LocalPlan, 34, Orchestration)        \
  X(AuthHello, AuthHello, 11, Auth)                 \
  X(AuthChallenge, AuthChallenge, 12, Auth)         \
  X(AuthProof, AuthProof, 13, Auth)                 \
  X(AuthOk, AuthOk, 15, Auth)                       \
  X(Params, Params, 16, Strategy)                   \
  X(Gradient, Gradient, 17, Strategy)               \
  X(ModelDelta, ModelDelta, 18, Strategy)           \
  X(RingChunk, RingChunk, 19, Strategy)             \
  X(AllreduceReport, AllreduceReport, 20, Strategy) \
  X(RingHalt, RingHalt, 25, Strategy)               \
  X(RingHalted, RingHalted, 26, Strategy)           \
  X(RingReform, RingReform, 27, Strategy)           \
  X(PeerGradient, PeerGradient, 21, Strategy)       \
  X(CcdcCoded, CcdcCoded, 40, Strategy)             \
  X(CcdcSlice, CcdcSlice, 41, Strategy)             \
  X(Heartbeat, Heartbeat, 14, Link)                 \
  X(ShmOffer, ShmOffer, 60, Link)                   \
  X(ShmReply, ShmReply, 61, Link)                   \
  X(ShmFrame, ShmFrame, 62, Link)

enum class MessageType : std::uint16_t {
#define PSGD_MESSAGE_ENUMERATOR(Struct, Name, id, Channel) k##Name = id,
  PSGD_MESSAGE_TYPES(PSGD_MESSAGE_ENUMERATOR)
#undef PSGD_MESSAGE_ENUMERATOR
};

#define PSGD_MESSAGE_DECLARATION(Struct, Name, id, Channel) struct Struct;
PSGD_MESSAGE_TYPES(PSGD_MESSAGE_DECLARATION)
#undef PSGD_MESSAGE_DECLARATION

// What the list says about message struct T (defined for list entries only).
template <class T>
struct MessageTraits;
#define PSGD_MESSAGE_TRAITS(Struct, Name, id, Channel_)       \
  template <>                                                 \
  struct MessageTraits<Struct> {                              \
    static constexpr MessageType type = MessageType::k##Name; \
    static constexpr const char* name = #Name;                \
    static constexpr Channel channel = Channel::k##Channel_;  \
  };
PSGD_MESSAGE_TYPES(PSGD_MESSAGE_TRAITS)
#undef PSGD_MESSAGE_TRAITS

template <class... Ts>
struct TypeList {};

namespace detail {
template <class L>
struct Tail;
template <class T, class... Ts>
struct Tail<TypeList<T, Ts...>> {
  using type = TypeList<Ts...>;
};
template <class... Ls>
struct Concat {
  using type = TypeList<>;
};
template <class... Ts>
struct Concat<TypeList<Ts...>> {
  using type = TypeList<Ts...>;
};
template <class... As, class... Bs, class... Rest>
struct Concat<TypeList<As...>, TypeList<Bs...>, Rest...> : Concat<TypeList<As..., Bs...>, Rest...> {
};
// The types of list L on link channel (Link) or on any other (!Link), in list order.
template <class L, bool Link>
struct Select;
template <class... Ts, bool Link>
struct Select<TypeList<Ts...>, Link>
    : Concat<std::conditional_t<(MessageTraits<Ts>::channel == Channel::kLink) == Link,
                                TypeList<Ts>, TypeList<>>...> {};
template <class L>
struct VariantOf;
template <class... Ts>
struct VariantOf<TypeList<Ts...>> {
  using type = std::variant<Ts...>;
};
}  // namespace detail

// Every message type, in list order.
#define PSGD_MESSAGE_LIST_ENTRY(Struct, Name, id, Channel) , Struct
using AllMessageTypes =
    typename detail::Tail<TypeList<void PSGD_MESSAGE_TYPES(PSGD_MESSAGE_LIST_ENTRY)>>::type;
#undef PSGD_MESSAGE_LIST_ENTRY
// The alternatives of Message: every type but the link messages.
using PublicMessageTypes = detail::Select<AllMessageTypes, false>::type;
// The alternatives of LinkMessage (network/messages/link.h).
using LinkMessageTypes = detail::Select<AllMessageTypes, true>::type;

// Calls f(std::type_identity<T>{}) for every type T of `list`, in order.
template <class... Ts, class F>
constexpr void for_each_type(TypeList<Ts...>, F&& f) {
  (f(std::type_identity<Ts>{}), ...);
}

// The list as a table, for code that looks a type up at run time.
struct MessageInfo {
  MessageType type;
  const char* name;
  Channel channel;
};
namespace detail {
template <class... Ts>
constexpr std::array<MessageInfo, sizeof...(Ts)> message_infos(TypeList<Ts...>) {
  return {
      MessageInfo{MessageTraits<Ts>::type, MessageTraits<Ts>::name, MessageTraits<Ts>::channel}...};
}
}  // namespace detail
inline constexpr auto kMessageInfos = detail::message_infos(AllMessageTypes{});

namespace detail {
constexpr const MessageInfo* find_message_info(std::uint16_t type) {
  for (const MessageInfo& info : kMessageInfos)
    if (static_cast<std::uint16_t>(info.type) == type) return &info;
  return nullptr;
}
constexpr bool wire_ids_unique() {
  for (std::size_t i = 0; i < kMessageInfos.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (kMessageInfos[i].type == kMessageInfos[j].type) return false;
  return true;
}
}  // namespace detail
static_assert(detail::wire_ids_unique(), "two entries of PSGD_MESSAGE_TYPES share a wire id");

// Whether `type` names a message type of this protocol version.
constexpr bool known_type(std::uint16_t type) {
  return detail::find_message_info(type) != nullptr;
}

// The list's name of `type` ("unknown" for a number that names none).
constexpr const char* type_name(MessageType type) {
  const MessageInfo* info = detail::find_message_info(static_cast<std::uint16_t>(type));
  return info ? info->name : "unknown";
}

// Whether `type` is a link message (handled inside the connection). False for unknown numbers.
constexpr bool is_link(MessageType type) {
  const MessageInfo* info = detail::find_message_info(static_cast<std::uint16_t>(type));
  return info && info->channel == Channel::kLink;
}

}  // namespace psgd

// The structs of the channels a connection delivers, parts of this header (they use
// kProtocolVersion): include network/messages.h. The link messages are in
// network/messages/link.h, for the connection only.
#include "network/messages/auth.h"
#include "network/messages/orchestration.h"
#include "network/messages/strategy.h"

namespace psgd {

// What a connection delivers and its owner sends.
using Message = detail::VariantOf<PublicMessageTypes>::type;
static_assert(std::is_same_v<std::variant_alternative_t<0, Message>, ErrorMessage>,
              "ErrorMessage comes first: a default Message is an ErrorMessage");

// The wire id of the message held.
MessageType type_of(const Message& message);

// Serialises the body only (no frame header).
std::vector<std::uint8_t> encode_body(const Message& message);
// Appends the body to `out` (lets the framer write the header in front without a copy). With
// `blobs`, large arrays are not copied but listed there (see wire::Blob in network/archive.h).
namespace wire {
struct Blob;
}
void append_body(const Message& message, std::vector<std::uint8_t>& out,
                 std::vector<wire::Blob>* blobs = nullptr);
// encode_body(message).size(), counted without encoding (nothing is copied or allocated).
std::size_t body_size(const Message& message);

// Parses a body of the given type. Throws ProtocolError for an unknown type or a link message's,
// a truncated or oversized field, or trailing bytes.
Message decode_body(MessageType type, std::span<const std::uint8_t> body);
// The same, for a body kept alive by `owner`: payloads (Params, Gradient, ...) view `body`
// instead of copying it, and hold `owner` for as long as they live.
Message decode_body(MessageType type, std::span<const std::uint8_t> body,
                    const std::shared_ptr<const void>& owner);

}  // namespace psgd
