#pragma once
// Per-phase timings a worker reports with each gradient; summed per epoch into workers.csv.
namespace psgd {

struct PhaseTimes {
  double compute_s = 0;  // forward + backward on the batch
  double encode_s = 0;   // codec encode of the gradient
  double wait_s = 0;     // from sending the gradient until the next parameters arrived
  double decode_s = 0;   // decoding the parameters received
  double apply_s = 0;    // installing the parameters / applying an update locally

  PhaseTimes& operator+=(const PhaseTimes& o) {
    compute_s += o.compute_s;
    encode_s += o.encode_s;
    wait_s += o.wait_s;
    decode_s += o.decode_s;
    apply_s += o.apply_s;
    return *this;
  }
};

}  // namespace psgd
