#!/usr/bin/env bash
# Calibrates the simulator against this machine: runs the real 4-worker loopback TCP job
# (scripts/run_local.sh), derives the simulator's inputs from that run's own measurements, runs
# the same job with init_server --simulate and compares the epoch times.
#
#   scripts/calibrate_sim.sh [EPOCHS (default 4)] [extra init_server flags...]
#
# Inputs derived from the real run (epochs 2.., the first is warm-up):
#   compute  fixed:X, X = (compute_s + encode_s + decode_s) / iterations of workers.csv: what one
#            worker step took on this machine, CPU sharing included;
#   link     each worker's transfer_s (wait_s - held_s: its gradient up and its parameters down,
#            queueing on the server included) per iteration; with n workers queueing on one
#            server NIC a worker waits on average (n + 1) / 2 messages each way, so one message
#            takes t = transfer / (n + 1) and the effective bandwidth is frame_bytes * 8 / t;
#   latency  the loopback round trip / 2 from scripts/loopback_probe.py (which also prints the
#            raw loopback bandwidth, for reference: psgd's framing costs much more than the wire).
# The error reported is (simulated - real) / real of the mean epoch time over epochs 2...
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
EPOCHS=${1:-4}
shift || true
OUT=${CALIBRATE_DIR:-runs/calibrate-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
N=4

echo "calibrate: real run ($N workers, loopback TCP, $EPOCHS epochs) -> $OUT/tcp"
scripts/run_local.sh --node_count $N --epochs "$EPOCHS" --output "$OUT/tcp" "$@" > "$OUT/tcp.log" 2>&1

read -r BW_RAW LAT < <(python3 scripts/loopback_probe.py | awk '{v[$1]=$2} END {print v["bandwidth_bps"], v["latency_s"]}')
read -r X BW < <(python3 - "$OUT/tcp" $N <<'PY'
import csv, json, sys
run, n = sys.argv[1], int(sys.argv[2])
rows = [r for r in csv.DictReader(open(f"{run}/workers.csv")) if int(r["epoch"]) >= 2]
it = sum(int(r["iterations"]) for r in rows)
step = sum(float(r["compute_s"]) + float(r["encode_s"]) + float(r["decode_s"]) for r in rows) / it
transfer = sum(float(r["transfer_s"]) for r in rows) / it
m = list(csv.DictReader(open(f"{run}/metrics.csv")))
frame = int(m[-1]["bytes_up"]) / int(m[-1]["iteration"]) / n  # one gradient frame
print(f"{step:.6f} {frame * 8 / (transfer / (n + 1)):.0f}")
PY
)
LAT_US=$(python3 -c "print(f'{$LAT * 1e6:.3f}us')")
echo "calibrate: step ${X} s, effective link $(python3 -c "print(f'{$BW/1e9:.2f}')") Gbps" \
  "(raw loopback $(python3 -c "print(f'{$BW_RAW/1e9:.1f}')") Gbps), latency $LAT_US"
"$BIN/init_server" --simulate --node_count $N --epochs "$EPOCHS" --output "$OUT/sim" "$@" \
  --sim_compute "fixed:$X" --net_bandwidth "${BW}bps" --net_latency "$LAT_US" > "$OUT/sim.log"

python3 - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
def epochs(run, col):
    m = list(csv.DictReader(open(f"{out}/{run}/metrics.csv")))
    t = [float(r[col]) for r in m]
    return [b - a for a, b in zip(t, t[1:])]
real, sim = epochs("tcp", "wall_s"), epochs("sim", "virtual_s")
print("epoch  real_s  sim_s")
for i, (r, s) in enumerate(zip(real, sim), 1):
    print(f"{i:5}  {r:6.3f}  {s:6.3f}")
r, s = sum(real[1:]) / len(real[1:]), sum(sim[1:]) / len(sim[1:])
err = (s - r) / r
print(f"mean epoch (2..): real {r:.3f} s, simulated {s:.3f} s, error {100 * err:+.1f} %"
      f" ({'within' if abs(err) <= 0.25 else 'OUTSIDE'} the 25 % target)")
open(f"{out}/calibration.txt", "w").write(f"real_epoch_s {r:.4f}\nsim_epoch_s {s:.4f}\nerror {err:.4f}\n")
PY
