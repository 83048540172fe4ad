#pragma once
// The shape of a job every layer shares: how many workers, what each computes per iteration, for
// how long, and the seed every random stream derives from (core/seeds.h).
#include <cstdint>

namespace psgd {

struct ClusterOptions {
  int node_count = 4;    // worker processes (clients)
  int batch_size = 128;  // samples per worker per iteration
  int redundancy = 1;    // workers holding each data block
  int epochs = 5;        // passes over the training set
  std::uint64_t seed = 1;

  // Throws ConfigError naming the flag.
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("node_count", self.node_count,
          "Number of workers (client processes) to wait for (1..1024)");
    visit("batch_size", self.batch_size,
          "Samples per worker per iteration (the global batch is node_count x batch_size)");
    visit("redundancy", self.redundancy,
          "Workers holding each data block (1: a plain split; r > 1: one block per r-subset of "
          "the workers; gc / ndc: fractional repetition, r must divide node_count; ccdc: "
          "1 <= r < node_count)");
    visit("epochs", self.epochs, "Passes over the training set");
    visit("seed", self.seed,
          "Seed of model initialisation, data placement, batch order and every other random "
          "stream of the job (core/seeds.h)");
  }
};

}  // namespace psgd
