#pragma once
// A Clock a test moves by hand (set `t`), for code that reads a wall or virtual clock.
#include "core/clock.h"

namespace psgd::testing {

class ManualClock final : public Clock {
 public:
  double now() const override { return t; }
  double t = 0;
};

}  // namespace psgd::testing
