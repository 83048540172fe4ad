#pragma once
// The codec options of a job, as flags. --codec itself (a compressor from codecs/codec_table.h,
// or a coded-redundancy scheme that replaces the strategy's roles, psgd/coding_table.h) is the
// strategy layer's option (psgd/options.h); which of these options a compressor uses is its table
// entry's to say, and a job that sets one its codec ignores is refused (psgd::StrategyJob).
#include <cstdint>
#include <string>

namespace psgd {

struct CodecOptions {
  int codec_levels = 8;                 // qsgd: quantisation levels s (1..32767)
  double codec_ratio = 0.01;            // topk / randk: fraction of coordinates kept, in (0, 1]
  std::int64_t codec_bucket = -1;       // qsgd, sign: elements per norm / scale (0: whole vector,
                                        // -1: the codec's default, CodecEntry::default_bucket)
  std::string error_feedback = "auto";  // auto (the codec's default) | on | off
  // topk: selection per tensor ("tensor", DGC) or over the whole flat gradient ("global"), and
  // DGC's sparsity warm-up: the kept fraction decays exponentially from codec_warmup_ratio to
  // codec_ratio over the first codec_warmup_epochs epochs (0: none). codecs/topk.h.
  std::string codec_scope = "global";
  double codec_warmup_epochs = 0;
  double codec_warmup_ratio = 0.25;
  std::string server_codec = "plain";  // parameters, server -> worker: a dense codec
  int codec_rank = 4;                  // powersgd (under --psgd allreduce): the rank r, 1..64

  // The checks that need no other option: ranges, and --server_codec among the dense codecs.
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("codec_levels", self.codec_levels,
          "qsgd: quantisation levels s (1..32767; b = ceil(log2(s+1))+1 bits per element)");
    visit("codec_ratio", self.codec_ratio,
          "topk / randk: fraction of coordinates kept, in (0, 1]; k = max(1, round(ratio n))");
    visit("codec_bucket", self.codec_bucket,
          "qsgd, sign: elements sharing one norm / scale, as QSGD's buckets; 0: the whole "
          "gradient; -1: the codec's own default, 512 for qsgd (as in the QSGD paper), 0 for "
          "sign (with error feedback, per-bucket sign scales train worse; see codecs/sign.h)");
    visit("error_feedback", self.error_feedback,
          "Error feedback around the codec: auto (on for sign, topk, randk) | on | off");
    visit("codec_scope", self.codec_scope,
          "topk: choose the kept coordinates per tensor (tensor: each layer's weight and bias "
          "get a share of the budget proportional to their size, as DGC) or over the whole flat "
          "gradient (global)");
    visit("codec_warmup_epochs", self.codec_warmup_epochs,
          "topk: sparsity warm-up (DGC): the kept fraction decays exponentially from "
          "--codec_warmup_ratio to --codec_ratio over this many epochs (0: none)");
    visit("codec_warmup_ratio", self.codec_warmup_ratio,
          "topk: the kept fraction at the start of the warm-up, in (0, 1]");
    visit("server_codec", self.server_codec, server_codec_help());
    visit("codec_rank", self.codec_rank,
          "powersgd (--psgd allreduce): the rank r of each weight matrix's approximation, 1..64 "
          "(PyTorch's matrix_approximation_rank); a rows x cols matrix then travels as "
          "(rows + cols) r values");
  }
  static std::string server_codec_help();
};

}  // namespace psgd
