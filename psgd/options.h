#pragma once
// The strategy options of a job, as flags: --psgd and --codec (which together pick the roles,
// psgd/strategy_table.h and psgd/coding_table.h) and each strategy's own knobs. Which strategy
// reads which knob is its table entry's to say (StrategyEntry::options): a job that sets a knob
// its strategy does not read is refused, naming the strategies that do. Defaults: 0, -1 or the
// values below mean "not given".
#include <cstdint>
#include <string>

namespace psgd {

struct StrategyOptions {
  std::string psgd = "ssgd";  // synchronisation strategy (psgd/strategy_table.h)
  // A compressor (codecs/codec_table.h) or a coded-redundancy scheme (psgd/coding_table.h).
  std::string codec = "plain";
  int wait_for = 0;           // ssgd: close each round with the first k gradients (0: all)
  bool overlap = false;       // ssgd: compute the next batch while a gradient travels; allreduce:
                              // sum the gradient in buckets while backward computes the rest
  double bucket_mb = 0;       // allreduce --overlap: bucket size in MB (0: 25, DDP's bucket_cap_mb)
  int staleness = -1;         // ssp: clocks a worker may run ahead of the slowest (-1: 2)
  bool staleness_lr = false;  // asgd, ssp: weight 1/max(n, staleness + 1), not 1/n
  double delay_compensation = 0;  // asgd: DC-ASGD's lambda (psgd/delay_compensation.h); 0: off
  std::string delay_compensation_mode = "adaptive";  // adaptive (DC-ASGD-a) | constant (-c)
  int sync_period = 0;                     // local_sgd: local steps between model averages (0: 4)
  int local_after_epochs = 0;              // local_sgd: epochs of H = 1 first
  std::string allreduce_backend = "ring";  // allreduce: ring (ours, peer links) | shm | gloo
  // allreduce: what a worker lost during training does to the run (psgd/allreduce.h): fail (the
  // run ends) | shrink (the others re-form the ring without it and go on).
  std::string allreduce_on_loss = "fail";

  // Effective values of the options above for the strategy in use.
  int ssp_staleness() const { return staleness < 0 ? 2 : staleness; }
  int local_sync_period() const { return sync_period > 0 ? sync_period : 4; }
  double allreduce_bucket_mb() const { return bucket_mb > 0 ? bucket_mb : 25; }

  // The checks that need no other option (ranges and spellings).
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("psgd", self.psgd, psgd_help());
    visit("codec", self.codec, codec_help());
    visit("wait_for", self.wait_for,
          "ssgd: close each round with the first k gradients (backup workers, Chen et al. "
          "2016); late ones are dropped and their worker resynchronised (0: all workers)");
    visit("overlap", self.overlap,
          "ssgd: compute the next batch while the last gradient travels (Parallel-SGD's fast "
          "mode: double buffering, one step of delay). Right after sending the gradient of batch "
          "t, computed on parameters w_t, a worker computes batch t+1's gradient on the same "
          "w_t; when w_{t+1} arrives it sends that gradient at once and starts batch t+2 on "
          "w_{t+1}. So the server's update t+1 averages gradients computed on w_t: "
          "w_{t+1} = w_t - lr * mean g(w_{t-1}) from the second round on (the first uses w_0). "
          "The server is unchanged. Stale gradients and momentum do not mix: on a quadratic, "
          "one step of delay is stable only while lr * curvature / (1 - momentum) < 1 (about "
          "2 (1 + momentum) / (1 - momentum) times less than without delay), and the CNN at lr "
          "0.05 with momentum 0.9 diverged (bench/README.md \"Overlap\"); lower --momentum "
          "or --learn_rate with it. Not with --wait_for k < node_count, a coded scheme or "
          "--checkpoint_every. allreduce: PyTorch DDP's overlap, no delay: the gradient is "
          "summed in buckets of layers (--bucket_mb), each bucket's ring started as soon as "
          "backward has computed it, so the last layers' sums travel while backward computes "
          "the first layers'. The result is bit-identical to allreduce without --overlap. Only "
          "with --codec plain or fp16, --allreduce_backend ring and --allreduce_on_loss fail. "
          "Default off");
    visit("bucket_mb", self.bucket_mb,
          "allreduce --overlap: the bucket size in MB (10^6 bytes of fp32 gradient), as DDP's "
          "bucket_cap_mb: layers are grouped from the last one backwards into buckets of at "
          "least this size (0: the default, 25). The first bucket closes sooner, so that its "
          "ring starts while backward computes the rest: at 1 MiB (DDP's first bucket), this "
          "size or a quarter of the gradient, whichever is smallest (the CNN: its dense layers, "
          "0.81 MB, then its convolutions). A layer is never split: a model whose last layers "
          "reach a quarter only with the first one (the MLP) is one bucket, and nothing "
          "overlaps; the job's start says which buckets it made");
    visit("staleness", self.staleness,
          "ssp: iterations a worker may run ahead of the slowest before it waits (-1: the "
          "default, 2; 0 is lock-step like ssgd)");
    visit("staleness_lr", self.staleness_lr,
          "asgd, ssp: staleness-aware rate (Zhang et al. 2016): weight each gradient "
          "1/max(node_count, staleness + 1) instead of 1/node_count, so a gradient staler than "
          "node_count workers taking turns give (a slow worker's) counts less (default off; it "
          "did not make asgd's accuracy steadier, see bench/README.md)");
    visit("delay_compensation", self.delay_compensation,
          "asgd: delay-compensated ASGD (DC-ASGD, Zheng et al. ICML 2017). A worker's gradient g "
          "was computed on the parameters it was sent, w_stale, but is applied to the current "
          "ones, w; the server applies g + lambda * g*g*(w - w_stale) instead (elementwise: a "
          "first-order Taylor correction with the Hessian's diagonal approximated by g*g). With "
          "worker-side momentum each gradient is corrected once and the correction carried "
          "through that worker's momentum. This flag is lambda (0: off, the default); see "
          "--delay_compensation_mode for its scale (the paper: 2 adaptive, 0.04 constant). The "
          "server keeps ~3 model copies per worker. Measured on the MLP / Fashion-MNIST check it "
          "did not make asgd's accuracy reliable (bench/README.md)");
    visit("delay_compensation_mode", self.delay_compensation_mode,
          "asgd with --delay_compensation: adaptive (default, DC-ASGD-a, the paper's "
          "recommendation: lambda is divided per coordinate by the root of a moving average of "
          "g*g, so it does not depend on the gradient's scale) or constant (DC-ASGD-c: lambda as "
          "given)");
    visit("sync_period", self.sync_period,
          "local_sgd: local optimiser steps between model averages, H (0: the default, 4; 1 is "
          "ssgd's trajectory)");
    visit("local_after_epochs", self.local_after_epochs,
          "local_sgd: run the first E epochs with H = 1, then H = --sync_period (post-local "
          "SGD, Lin et al. 2020)");
    visit("allreduce_backend", self.allreduce_backend,
          "allreduce: ring (ours, pipelined over peer TCP links or shared memory) | shm (every "
          "worker on one machine: one shared-memory segment, the last worker to arrive sums; "
          "for more workers than cores) | gloo (c10d ProcessGroupGloo). shm and gloo are real "
          "runs only (the simulator models the ring)");
    visit("allreduce_on_loss", self.allreduce_on_loss,
          "allreduce with the ring backend: what happens when a worker is lost during training "
          "(killed, left on SIGTERM, or silent for --dead_after). fail (default): the run ends "
          "with status failed, naming the worker. shrink: the remaining workers re-form the ring "
          "without it at the next iteration boundary and go on; each later iteration averages "
          "their gradients (the same --learn_rate, the same iterations per epoch), and the data "
          "only the lost worker held is no longer trained on. summary.json's events say who was "
          "lost, at which iteration, and what the ring became (ring_reformed)");
  }
  // --psgd's and --codec's help, listing the strategy, codec and coding tables.
  static std::string psgd_help();
  static std::string codec_help();
};

}  // namespace psgd
