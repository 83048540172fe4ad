// PayloadRecycler: a worker's payload buffer comes back once the message carrying it is released.
#include <gtest/gtest.h>

#include "psgd/common.h"

namespace psgd {
namespace {

TEST(PayloadRecycler, TakesThePayloadBackOnlyOnceNoOneElseHoldsTheMessage) {
  PayloadRecycler recycler;
  EXPECT_TRUE(recycler.take().bytes.empty());

  Payload p = recycler.take();
  p.bytes.assign(1000, 7);
  const std::uint8_t* buffer = p.bytes.data();
  auto in_flight = recycler.keep(Gradient{.iteration = 1, .values = std::move(p)});
  // The transport still holds the message: its payload must stay intact.
  Payload q = recycler.take();
  EXPECT_TRUE(q.bytes.empty());
  ASSERT_EQ(std::get<Gradient>(*in_flight).values.bytes.size(), 1000u);
  EXPECT_EQ(std::get<Gradient>(*in_flight).values.bytes.data(), buffer);

  q.bytes.assign(2000, 9);
  const std::uint8_t* second = q.bytes.data();
  auto sent = recycler.keep(ModelDelta{.iteration = 2, .values = std::move(q)});
  sent.reset();  // written and released
  Payload back = recycler.take();
  EXPECT_EQ(back.bytes.data(), second);
  EXPECT_EQ(back.bytes.size(), 2000u);
  EXPECT_TRUE(recycler.take().bytes.empty());  // handed out once
}

}  // namespace
}  // namespace psgd
