// network/backoff.h: waits grow to the cap, each within [step / 2, step], and two clients that
// start at the same moment do not wait alike (the jitter that keeps them from redialling in
// lockstep).
#include "network/backoff.h"

#include <gtest/gtest.h>

namespace psgd::net {
namespace {

TEST(Backoff, WaitsDoubleUpToTheCapWithinHalfAStep) {
  Backoff b(0.1, 2.0, /*seed=*/7);
  double step = 0.1;
  for (int i = 0; i < 12; ++i) {
    const double wait = b.next();
    EXPECT_GE(wait, step / 2) << i;
    EXPECT_LE(wait, step) << i;
    step = std::min(step * 2, 2.0);
  }
  b.reset();
  EXPECT_LE(b.next(), 0.1);
}

TEST(Backoff, TwoClientsDoNotWaitInLockstep) {
  Backoff a(0.1, 2.0, 1), b(0.1, 2.0, 2);
  int equal = 0;
  for (int i = 0; i < 10; ++i)
    equal += a.next() == b.next();
  EXPECT_LT(equal, 2);
  // Without a seed each draws its own.
  Backoff c, d;
  double sum_c = 0, sum_d = 0;
  for (int i = 0; i < 10; ++i) {
    sum_c += c.next();
    sum_d += d.next();
  }
  EXPECT_NE(sum_c, sum_d);
}

}  // namespace
}  // namespace psgd::net
