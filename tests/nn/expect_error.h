#pragma once
// expect_config_error(f, part): f() must throw a one-line ConfigError whose message contains part.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace psgd::nn::testing {

template <class F>
void expect_config_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning: " << part;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

}  // namespace psgd::nn::testing
