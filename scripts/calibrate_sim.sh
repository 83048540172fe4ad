#!/usr/bin/env bash
# Calibrates the simulator against an emulated LAN on this machine: runs each job for real, every
# host in its own network namespace behind a rate cap (scripts/run_local.sh --emulate), then the
# same job with init_server --simulate, and prints the epoch times side by side with the error.
# Needs root and iproute2 (the emulation); takes about a minute per job at the defaults.
#
#   scripts/calibrate_sim.sh [--workers 4,8] [--codecs plain,topk] [--net_bandwidth 100Mbps]
#                            [--epochs 3] [--train_samples 12000] [--out DIR] [-- job flags...]
#
# Job flags after -- go to both runs (e.g. -- --model cnn --batch_size 64). What the simulator is
# given, all measured on this machine:
#   link     the emulated cap itself (--net_bandwidth; the simulator adds the packet headers the
#            cap also counts, --net_mtu 1500);
#   latency  half the round trip of a 16-byte TCP ping-pong between two namespaces on links of that
#            cap (the kernel's own latency: no netem delay is added);
#   compute  fixed:X, X = (compute_s + encode_s + decode_s) / iterations from the emulated run's
#            workers.csv over epochs 2.. (one worker step as it ran there, sharing this machine's
#            cores with the other processes).
# The error is (simulated - emulated) / emulated per epoch; the summary line averages epochs 2..
# (the first includes start-up). Results go to DIR (default runs/calibrate-<time>): each run's
# directory and calibration.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
die() { echo "calibrate_sim: $*" >&2; exit 2; }

workers=4,8 codecs=plain,topk rate=100Mbps epochs=3 samples=12000
out=runs/calibrate-$(date -u +%Y%m%d-%H%M%S)
while (($#)); do
  case $1 in
    --workers) workers=${2:-}; shift 2 ;;
    --codecs) codecs=${2:-}; shift 2 ;;
    --net_bandwidth) rate=${2:-}; shift 2 ;;
    --epochs) epochs=${2:-}; shift 2 ;;
    --train_samples) samples=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --) shift; break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help; job flags go after --)" ;;
  esac
done
job=("$@")
[[ $workers =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--workers $workers: give counts like 4,8"
[[ $epochs =~ ^[0-9]+$ ]] && ((epochs >= 2)) || die "--epochs $epochs: give 2 or more (the first is start-up)"
[[ $samples =~ ^[0-9]+$ ]] || die "--train_samples $samples: give a number (0: the whole set)"
[[ -x $BIN/init_server && -x $BIN/client ]] || die "$BIN/init_server not built; run scripts/build.sh first"
source scripts/netns.sh
netns_available || die "$NETNS_WHY"
netns_rate_bps "$rate" >/dev/null || exit 2
mkdir -p "$out"
IFS=, read -ra ns <<<"$workers"
IFS=, read -ra cs <<<"$codecs"

echo "calibrate_sim: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# Latency: a ping-pong between two namespaces on links of this rate.
latency_probe() {
  (
    trap 'netns_teardown' EXIT
    netns_cluster_create a b >/dev/null
    netns_link 0 "$rate" && netns_link 1 "$rate"
    netns_exec 0 python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (m := c.recv(16)): c.sendall(m)' &
    netns_exec 1 python3 -c '
import socket, sys, time
for _ in range(50):
    try: s = socket.create_connection((sys.argv[1], 5001)); break
    except OSError: time.sleep(0.05)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtt = []
for _ in range(300):
    t = time.perf_counter(); s.sendall(b"x" * 16); s.recv(16); rtt.append(time.perf_counter() - t)
print(f"{sorted(rtt)[len(rtt) // 2] / 2 * 1e6:.1f}us")' "$(netns_ip 0)"
  )
}
latency=$(latency_probe) || die "the latency probe failed"
echo "calibrate_sim: link $rate (the cap), latency $latency (half the median ping-pong round trip)"

for codec in "${cs[@]}"; do
  for n in "${ns[@]}"; do
    name=$codec-n$n
    flags=(--node_count "$n" --codec "$codec" --epochs "$epochs" --train_samples "$samples" "${job[@]}")
    echo "calibrate_sim: $name: emulated run (load $(cut -d' ' -f1 /proc/loadavg))"
    rm -rf "$out/$name-emulated" "$out/$name-simulated"
    scripts/run_local.sh --emulate --net_bandwidth "$rate" "${flags[@]}" \
      --output "$out/$name-emulated" >"$out/$name-emulated.log" 2>&1 ||
      die "the emulated run failed; see $out/$name-emulated.log"
    step=$(python3 - "$out/$name-emulated" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(f"{sys.argv[1]}/workers.csv")) if int(r["epoch"]) >= 2]
it = sum(int(r["iterations"]) for r in rows)
print(f"{sum(float(r['compute_s']) + float(r['encode_s']) + float(r['decode_s']) for r in rows) / it:.6f}")
PY
)
    echo "calibrate_sim: $name: simulated run (compute fixed:$step s per step)"
    "$BIN/init_server" --simulate "${flags[@]}" --net_bandwidth "$rate" --net_latency "$latency" \
      --sim_compute "fixed:$step" --output "$out/$name-simulated" >"$out/$name-simulated.log" 2>&1 ||
      die "the simulated run failed; see $out/$name-simulated.log"
  done
done
echo "calibrate_sim: load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$rate" "$latency" "$epochs" "${cs[*]}" "${ns[*]}" <<'PY'
import csv, json, sys
out, rate, latency, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
codecs, counts = sys.argv[5].split(), sys.argv[6].split()
def epoch_times(run, column):
    t = [float(r[column]) for r in csv.DictReader(open(f"{out}/{run}/metrics.csv"))]
    return [b - a for a, b in zip(t, t[1:])]
results = []
print(f"\nepoch times at {rate}, latency {latency} (error = simulated / emulated - 1)")
print(f"{'job':<12} {'epoch':>5} {'emulated_s':>10} {'simulated_s':>11} {'error':>7}")
for codec in codecs:
    for n in counts:
        name = f"{codec}-n{n}"
        real, sim = epoch_times(f"{name}-emulated", "wall_s"), epoch_times(f"{name}-simulated", "virtual_s")
        for e, (r, s) in enumerate(zip(real, sim), 1):
            print(f"{name:<12} {e:>5} {r:>10.3f} {s:>11.3f} {100 * (s / r - 1):>+6.1f}%")
        r, s = sum(real[1:]) / len(real[1:]), sum(sim[1:]) / len(sim[1:])
        results.append({"job": name, "codec": codec, "workers": int(n), "emulated_epoch_s": real,
                        "simulated_epoch_s": sim, "mean_emulated_s": r, "mean_simulated_s": s,
                        "error": s / r - 1})
print(f"\n{'job':<12} {'emulated_s':>10} {'simulated_s':>11} {'error':>7}   (mean of epochs 2..{epochs})")
for x in results:
    ok = "within 10 %" if abs(x["error"]) <= 0.10 else "OUTSIDE 10 %"
    print(f"{x['job']:<12} {x['mean_emulated_s']:>10.3f} {x['mean_simulated_s']:>11.3f} {100 * x['error']:>+6.1f}%   {ok}")
json.dump({"net_bandwidth": rate, "net_latency": latency, "results": results},
          open(f"{out}/calibration.json", "w"), indent=2)
print(f"\ncalibrate_sim: written {out}/calibration.json")
PY
