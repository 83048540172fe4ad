#pragma once
// A small CSV dataset for tests that need data of their own (a header, the label in a named
// column that is not the last, features scaled so that normalising matters).
#include <random>
#include <sstream>
#include <string>

namespace psgd::testing {

// Two Gaussian blobs in 3 features (label 0 around -1, label 1 around +1), scaled by 100 so that
// the normaliser matters; with a header and the label in the middle.
inline std::string blobs_csv(int n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> g(0, 0.6);
  std::ostringstream out;
  out << "a,label,b,c\n";
  for (int i = 0; i < n; ++i) {
    const int y = i % 2;
    const double m = y ? 1 : -1;
    out << 100 * (m + g(gen)) << "," << y << "," << 100 * (m + g(gen)) << "," << 100 * (-m + g(gen))
        << "\n";
  }
  return out.str();
}

}  // namespace psgd::testing
