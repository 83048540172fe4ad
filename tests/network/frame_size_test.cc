// frame_size() (network/frame.h): the size of a frame, counted without building it, equals the
// size of the frame for every type of the message list and never touches the arrays.
#include "network/frame.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "network/messages/link.h"

namespace psgd {
namespace {

std::string text(std::size_t n) {
  return std::string(n, 't');
}
std::vector<std::uint8_t> bytes(std::size_t n) {
  return std::vector<std::uint8_t>(n, 0xb7);
}
std::vector<float> floats(std::size_t n) {
  return std::vector<float>(n, 1.25f);
}
Payload payload(std::size_t n) {
  return {.num_elements = n / 4, .bytes = std::vector<std::uint8_t>(n, 0x5a)};
}

// One message of each type whose strings and arrays hold about n elements (types without any
// have no overload here: they are tested default-constructed).
ErrorMessage sample(std::type_identity<ErrorMessage>, std::size_t n) {
  return {text(n)};
}
Hello sample(std::type_identity<Hello>, std::size_t n) {
  return {.host = text(n), .pid = 3, .version = text(n)};
}
Job sample(std::type_identity<Job>, std::size_t n) {
  return {.worker_id = 1,
          .spec_json = text(n),
          .samples = std::vector<std::int64_t>(n, 9),
          .data_hash = text(n),
          .norm_shift = floats(n),
          .norm_scale = floats(n),
          .block_ids = std::vector<std::int64_t>(n, 2),
          .block_sizes = std::vector<std::int64_t>(n, 4),
          .start_batch = 5,
          .test_salt = text(n),
          .test_hashes = std::vector<std::uint64_t>(n, 11)};
}
Ready sample(std::type_identity<Ready>, std::size_t n) {
  return {.worker_id = 2, .detail = text(n), .data_sha256 = text(n), .dataset = text(n)};
}
Finish sample(std::type_identity<Finish>, std::size_t n) {
  return {.status = text(n), .ok = false};
}
DataOffer sample(std::type_identity<DataOffer>, std::size_t n) {
  return {.hash = text(n), .rows_sha256 = text(n), .dataset = text(n), .why = text(n)};
}
LocalData sample(std::type_identity<LocalData>, std::size_t n) {
  return {.samples = 3,
          .label_histogram = std::vector<std::int64_t>(n, 7),
          .shape = std::vector<std::int64_t>(n, 1),
          .test_rows = 2,
          .dataset = text(n)};
}
LocalPlan sample(std::type_identity<LocalPlan>, std::size_t n) {
  return {.train_size = 100, .classes = 10, .shape = std::vector<std::int64_t>(n, 1)};
}
DataChunk sample(std::type_identity<DataChunk>, std::size_t n) {
  return {.index = 1, .total_sha256 = text(n), .sha256 = text(n), .compressed = bytes(n)};
}
PeerTable sample(std::type_identity<PeerTable>, std::size_t n) {
  return {.hosts = {text(n), "b"}, .ports = std::vector<std::int32_t>(n, 80), .key = bytes(n)};
}
PeerHello sample(std::type_identity<PeerHello>, std::size_t n) {
  return {.worker = 1, .nonce = bytes(n), .proof = bytes(n)};
}
AuthHello sample(std::type_identity<AuthHello>, std::size_t n) {
  return {.nonce = bytes(n), .identity = text(n), .has_key = true};
}
AuthChallenge sample(std::type_identity<AuthChallenge>, std::size_t n) {
  return {.nonce = bytes(n), .proof = bytes(n), .job_id = text(n), .server_id = text(n)};
}
Leave sample(std::type_identity<Leave>, std::size_t n) {
  return {.why = text(n)};
}
AuthProof sample(std::type_identity<AuthProof>, std::size_t n) {
  return {.proof = bytes(n)};
}
Params sample(std::type_identity<Params>, std::size_t n) {
  return {.iteration = 4, .values = payload(n)};
}
Gradient sample(std::type_identity<Gradient>, std::size_t n) {
  return {.iteration = 4, .values = payload(n), .loss = 0.5};
}
ModelDelta sample(std::type_identity<ModelDelta>, std::size_t n) {
  return {.iteration = 4, .values = payload(n), .local_steps = 2};
}
RingChunk sample(std::type_identity<RingChunk>, std::size_t n) {
  return {.round = 1, .values = floats(n)};
}
AllreduceReport sample(std::type_identity<AllreduceReport>, std::size_t n) {
  return {.iteration = 3, .param_hash = 7, .params = floats(n)};
}
RingHalt sample(std::type_identity<RingHalt>, std::size_t) {
  return {.generation = 2};
}
RingHalted sample(std::type_identity<RingHalted>, std::size_t n) {
  return {.generation = 2, .iteration = 5, .params = floats(n), .state = bytes(n)};
}
RingReform sample(std::type_identity<RingReform>, std::size_t n) {
  return {.generation = 2,
          .iteration = 5,
          .members = std::vector<std::int32_t>(n, 1),
          .params = floats(n),
          .state = bytes(n)};
}
PeerGradient sample(std::type_identity<PeerGradient>, std::size_t n) {
  return {.from = 1, .values = payload(n)};
}
CcdcCoded sample(std::type_identity<CcdcCoded>, std::size_t n) {
  return {.group = 2, .bits = std::vector<std::uint32_t>(n, 0xffu)};
}
CcdcSlice sample(std::type_identity<CcdcSlice>, std::size_t n) {
  return {.from = 2, .values = floats(n)};
}
ShmOffer sample(std::type_identity<ShmOffer>, std::size_t n) {
  return {.name = text(n), .slots = 3};
}
ShmReply sample(std::type_identity<ShmReply>, std::size_t n) {
  return {.why = text(n)};
}

TEST(FrameSize, EqualsTheEncodedFrameForEveryListedType) {
  for (const std::size_t n : {0, 1, 100000}) {
    for_each_type(AllMessageTypes{}, [&](auto type) {
      using T = typename decltype(type)::type;
      T m{};
      if constexpr (requires { sample(type, n); }) m = sample(type, n);
      const char* name = MessageTraits<T>::name;
      if constexpr (MessageTraits<T>::channel == Channel::kLink) {
        const LinkMessage link = m;
        EXPECT_EQ(kFrameHeaderBytes + body_size(link), encode_frame(link).size()) << name << n;
      } else {
        const auto message = std::make_shared<const Message>(m);
        EXPECT_EQ(frame_size(*message), encode_frame(*message).size()) << name << " " << n;
        EXPECT_EQ(frame_size(*message), EncodedFrame(message).size()) << name << " " << n;
      }
    });
  }
}

// Arrays that are views (a payload or ring chunk received in a frame or in shared memory, a
// chunk sent from the ring's buffer) are counted like owned ones.
TEST(FrameSize, CountsViewsLikeOwnedArrays) {
  const auto held = std::make_shared<const std::vector<std::uint8_t>>(
      encode_frame(Gradient{.iteration = 2, .values = payload(400000), .loss = 1, .samples = 8}));
  const auto body = std::span<const std::uint8_t>(*held).subspan(kFrameHeaderBytes);
  const Message viewed = decode_body(MessageType::kGradient, body, held);
  ASSERT_TRUE(std::get<Gradient>(viewed).values.frame);
  EXPECT_EQ(frame_size(viewed), held->size());

  const std::vector<float> values = floats(100000);
  const RingChunk chunk{
      .round = 1,
      .viewed = true,
      .view = {reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * 4}};
  EXPECT_EQ(frame_size(chunk), encode_frame(RingChunk{.round = 1, .values = values}).size());
}

// The arrays are not read, let alone copied: a payload viewing 1 GiB of address space that any
// read would fault on is counted all the same.
TEST(FrameSize, NeverReadsTheArrays) {
  constexpr std::size_t kSize = std::size_t{1} << 30;
  void* region =
      mmap(nullptr, kSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  const std::shared_ptr<const void> unmap(
      region, [](const void* p) { munmap(const_cast<void*>(p), kSize); });
  const std::span<const std::uint8_t> untouchable(static_cast<const std::uint8_t*>(region), kSize);
  Params params{.iteration = 1};
  params.values = {.num_elements = kSize / 4, .received = untouchable, .frame = unmap};
  EXPECT_EQ(frame_size(params), frame_size(Params{.iteration = 1}) + kSize);
  const RingChunk chunk{.round = 1, .viewed = true, .view = untouchable};
  EXPECT_EQ(frame_size(chunk), frame_size(RingChunk{.round = 1}) + kSize);
}

}  // namespace
}  // namespace psgd
