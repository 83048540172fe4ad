#include "network/tcp/shm_channel.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace psgd::net {
namespace {

std::vector<std::uint8_t> pattern(std::size_t n, int seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::uint8_t>(seed * 37 + i * 11);
  return v;
}

// Both ends in one process: the creator and a second mapping of the same segment.
struct Pair {
  std::shared_ptr<ShmChannel> a = ShmChannel::create(10000, 2);
  std::shared_ptr<ShmChannel> b = ShmChannel::open(a->name(), a->slot_bytes(), a->slots());
};

TEST(ShmChannel, SlotsAreRoundedToPagesAndTheNameCanBeUnlinked) {
  Pair p;
  EXPECT_EQ(p.a->slot_bytes(), 12288u);
  EXPECT_EQ(p.a->slots(), 2u);
  const std::filesystem::path file = "/dev/shm" + p.a->name();
  EXPECT_TRUE(std::filesystem::exists(file));
  p.b->unlink();
  EXPECT_FALSE(std::filesystem::exists(file));
  p.a->unlink();  // the other end was first: no error
  // The mappings outlive the name.
  const auto data = pattern(100, 1);
  const std::span<const std::uint8_t> part(data);
  ASSERT_TRUE(p.a->put({&part, 1}).has_value());
}

TEST(ShmChannel, TheCreatorRemovesTheNameWhenNobodyOpenedIt) {
  std::string name;
  {
    auto a = ShmChannel::create(4096, 1);
    name = a->name();
    EXPECT_TRUE(std::filesystem::exists("/dev/shm" + name));
  }
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name));
}

TEST(ShmChannel, BytesPutByOneEndAreTakenByTheOtherInBothDirections) {
  Pair p;
  const auto head = pattern(16, 2);
  const auto body = pattern(9000, 3);
  const std::span<const std::uint8_t> parts[] = {head, body};
  const auto slot = p.a->put(parts);
  ASSERT_TRUE(slot.has_value());
  auto [view, owner] = p.b->take(*slot, head.size() + body.size());
  ASSERT_EQ(view.size(), head.size() + body.size());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), view.begin()));
  EXPECT_TRUE(std::equal(body.begin(), body.end(), view.begin() + head.size()));

  const auto back = pattern(5000, 4);
  const std::span<const std::uint8_t> back_part(back);
  const auto back_slot = p.b->put({&back_part, 1});
  ASSERT_TRUE(back_slot.has_value());
  auto [back_view, back_owner] = p.a->take(*back_slot, back.size());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), back_view.begin()));
}

TEST(ShmChannel, ASlotReturnsToTheSenderOnlyWhenTheLastViewIsReleased) {
  Pair p;
  const auto data = pattern(1000, 5);
  const std::span<const std::uint8_t> part(data);
  const auto s0 = p.a->put({&part, 1});
  const auto s1 = p.a->put({&part, 1});
  ASSERT_TRUE(s0 && s1);
  EXPECT_NE(*s0, *s1);
  EXPECT_EQ(p.a->slots_in_use(), 2u);
  EXPECT_FALSE(p.a->put({&part, 1}).has_value()) << "both slots are full";

  auto taken = p.b->take(*s0, data.size());
  auto copy = taken.second;  // a second message viewing the same slot
  EXPECT_FALSE(p.a->put({&part, 1}).has_value()) << "taken is not free";
  taken.second.reset();
  EXPECT_FALSE(p.a->put({&part, 1}).has_value()) << "a copy of the owner still views it";
  copy.reset();
  EXPECT_EQ(p.a->slots_in_use(), 1u);
  const auto again = p.a->put({&part, 1});
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *s0);
}

TEST(ShmChannel, ATakeTheSenderDidNotAnnounceIsAProtocolError) {
  Pair p;
  EXPECT_THROW(p.b->take(0, 10), ProtocolError) << "slot 0 was never filled";
  EXPECT_THROW(p.b->take(2, 10), ProtocolError) << "there are 2 slots";
  EXPECT_THROW(p.b->take(0, p.a->slot_bytes() + 1), ProtocolError) << "over the slot size";
  const auto data = pattern(10, 6);
  const std::span<const std::uint8_t> part(data);
  const auto slot = p.a->put({&part, 1});
  ASSERT_TRUE(slot.has_value());
  auto taken = p.b->take(*slot, data.size());
  EXPECT_THROW(p.b->take(*slot, data.size()), ProtocolError) << "announced twice";
}

TEST(ShmChannel, AFrameLargerThanASlotIsNotPut) {
  Pair p;
  const std::vector<std::uint8_t> big(p.a->slot_bytes() + 1);
  const std::span<const std::uint8_t> part(big);
  EXPECT_FALSE(p.a->put({&part, 1}).has_value());
  EXPECT_EQ(p.a->slots_in_use(), 0u);
}

TEST(ShmChannel, OpeningWhatWasNotOfferedFails) {
  EXPECT_THROW(ShmChannel::open("/psgd-does-not-exist-0123", 4096, 1), IoError);
  EXPECT_THROW(ShmChannel::open("../../etc/passwd", 4096, 1), IoError);
  auto a = ShmChannel::create(4096, 2);
  EXPECT_THROW(ShmChannel::open(a->name(), 8192, 2), IoError) << "another slot size";
  EXPECT_THROW(ShmChannel::open(a->name(), 4096, 3), IoError) << "another slot count";
  EXPECT_THROW(ShmChannel::open(a->name(), 4095, 2), IoError) << "not a page multiple";
}

}  // namespace
}  // namespace psgd::net
