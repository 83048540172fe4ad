#!/usr/bin/env bash
# A strategy with and without --overlap on the same job, interleaved: samples/s and final accuracy
# of real runs (init_server + local clients, scripts/run_local.sh), each the median of the
# repeats, and the ratio overlap / without from the same invocation.
#
#   bench/overlap_compare.sh [--repeats R] [init_server flags...]
#   bench/overlap_compare.sh --repeats 2 --psgd allreduce --bucket_mb 0.1
#
# Default job: --model cnn --node_count 4 --epochs 1 --learn_rate 0.05 --momentum 0.9 --psgd ssgd;
# flags given after the script's own are added to every run (and replace a default they name),
# except --bucket_mb, which only the --overlap runs take (allreduce refuses it without).
# allreduce --overlap is bit-identical to allreduce without it: the script then also checks that
# both runs end with the same parameter hash (summary.json), and says so.
# Prints the CPU model and load average before and after, as bench/README.md asks.
# The runs are scripts/run_local.sh's: its own flags work here too (--emulate --net_bandwidth
# 100Mbps: an emulated LAN, root only), and BUILD_DIR=DIR takes init_server and client from
# DIR/experiments (a build of another commit, to compare before and after a change).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=3
if [[ ${1:-} == --repeats ]]; then
  repeats=$2
  shift 2
fi
# --bucket_mb X: for the --overlap runs only.
args=()
bucket=()
while (($#)); do
  if [[ $1 == --bucket_mb ]]; then
    bucket=(--bucket_mb "$2")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
set -- "${args[@]}"
work=$(mktemp -d /tmp/psgd-overlap-XXXXXX)
trap 'rm -rf "$work"' EXIT
defaults=(--psgd ssgd --model cnn --node_count 4 --epochs 1 --learn_rate 0.05 --momentum 0.9)
job=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  [[ " $* " == *" ${defaults[i]} "* ]] || job+=("${defaults[i]}" "${defaults[i + 1]}")
done

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= repeats; ++r)); do
  for mode in off on; do
    extra=()
    [[ $mode == on ]] && extra=(--overlap "${bucket[@]}")
    out="$work/$mode-$r"
    if ! scripts/run_local.sh "${job[@]}" "$@" "${extra[@]}" --output "$out" >"$work/$mode-$r.log" 2>&1; then
      echo "run $mode-$r FAILED:"
      tail -5 "$work/$mode-$r.log"
      exit 1
    fi
    python3 - "$out/summary.json" "$mode" "$r" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"overlap {sys.argv[2]:>3} repeat {sys.argv[3]}: {s['samples_per_second']:9.1f} samples/s, "
      f"final accuracy {100 * s['final_test_accuracy']:.2f} %")
EOF
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$repeats" <<'EOF'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
def median(mode, key):
    return statistics.median(json.load(open(f"{work}/{mode}-{r}/summary.json"))[key]
                             for r in range(1, repeats + 1))
off, on = median("off", "samples_per_second"), median("on", "samples_per_second")
acc_off, acc_on = median("off", "final_test_accuracy"), median("on", "final_test_accuracy")
print(f"median: without {off:.1f} samples/s ({100 * acc_off:.2f} %), with --overlap {on:.1f} "
      f"samples/s ({100 * acc_on:.2f} %): {on / off:.2f}x, accuracy {100 * (acc_on - acc_off):+.2f} points")
summaries = [json.load(open(f"{work}/{mode}-{r}/summary.json"))
             for mode in ("off", "on") for r in range(1, repeats + 1)]
if summaries[0].get("psgd") == "allreduce":
    hashes = {s.get("parameters_sha256") for s in summaries}
    print("parameters: bit-identical with and without --overlap in every repeat" if len(hashes) == 1
          else f"parameters DIFFER between runs: {sorted(hashes)}")
EOF
