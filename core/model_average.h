#pragma once
// An exponential moving average of the global model's parameters (--model_average ema:BETA),
// the model a run evaluates and saves instead of its last iterate.
//
// Why. SGD's last iterate carries the noise of its last few steps; an average of the recent
// iterates does not (Polyak & Juditsky 1992; for asynchronous SGD the averaged iterate is the one
// the analyses bound, e.g. Lian et al. 2015, and an EMA of the weights is what large-scale
// training evaluates, e.g. Izmailov et al. 2018 (SWA), Kaddour et al. 2022). asgd's last iterate
// after 2 epochs varies by ±2 points with the arrival order. Measured (4 workers, MLP,
// Fashion-MNIST, 2 epochs, lr 0.05, momentum 0.9, simulator with strict turns, seeds 1-8): last
// iterate 0.805 mean (2 of 8 >= 0.82), ema:0.99 0.829 (8 of 8), ema:0.995 0.825; the synchronous
// strategies gain less (ssgd +0.4 points), hence --model_average auto = ema:0.99 for asgd and ssp
// only (bench/README.md, "Strategies under a slow worker").
//
// Definition. After t updates with iterates p_1 .. p_t the average is
//     a_t = sum_i beta^(t - i) (1 - beta) p_i / (1 - beta^t),
// an exponential average with Adam's bias correction: its weights sum to 1 and the initial model
// gets none, so a short run is not pulled back to its initialisation. One update is one server
// iteration (an asgd or ssp gradient, an ssgd round, a local_sgd local step); when k iterations
// pass at once (local_sgd's average closes H steps) the parameters then held count k times.
// beta = 0.99 averages over the last ~1 / (1 - beta) = 100 iterations (asgd, 4 workers: ~0.2
// epoch of Fashion-MNIST).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace psgd {

// --model_average: which model a run evaluates and saves. Which strategies may average (those
// whose server holds the model) is the strategy table's to say (psgd/strategy_table.h).
struct ModelAverageOptions {
  // off (the last iterate) | ema:BETA | auto (ema:0.99 for asgd and ssp, off otherwise)
  std::string model_average = "auto";

  void validate() const;  // the syntax only; throws ConfigError naming --model_average

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("model_average", self.model_average,
          "ssgd, asgd, ssp, local_sgd: the model evaluated at each epoch end and saved "
          "(model.pt): off (the last iterate) or ema:BETA, an exponential moving average of the "
          "server's parameters over its iterations, bias-corrected (BETA 0.99: the last ~100 "
          "iterations); auto: the strategy's default (ema:0.99 for asgd and ssp, off "
          "otherwise). summary.json evaluated_model says which, and "
          "final_iterate_test_accuracy gives the last iterate's accuracy too");
  }
};

// Parses --model_average: "off" gives 0, "ema:BETA" gives BETA; throws ConfigError otherwise
// (BETA must lie in (0, 1)).
double parse_model_average(const std::string& text);

class ModelAverage {
 public:
  ModelAverage(double decay, std::size_t size);

  // The model has taken `updates` more iterations and its parameters are now `params`.
  void add(std::span<const float> params, std::int64_t updates = 1);
  // Writes the average into `out`; before any update it leaves `out` alone and returns false.
  bool average(std::span<float> out) const;

  std::int64_t updates() const { return updates_; }
  double decay() const { return decay_; }

  // Checkpoints: the running sum, its weight and the update count as bytes (core/state_io.h);
  // restore_state() takes them back into an average of the same decay and size (ProtocolError
  // otherwise), so a resumed run averages on exactly as an uninterrupted one.
  std::vector<std::uint8_t> state() const;
  void restore_state(std::span<const std::uint8_t> state);

 private:
  double decay_;
  std::vector<float> sum_;  // sum_i beta^(t - i) (1 - beta) p_i
  double weight_ = 0;       // 1 - beta^t, the sum of those weights
  std::int64_t updates_ = 0;
};

}  // namespace psgd
