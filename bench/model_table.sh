#!/usr/bin/env bash
# The closing table of issue 17: model x optimiser x strategy, short real runs (init_server and
# 4 client processes on this machine, scripts/run_local.sh), each run's final test accuracy and
# samples/s from its summary.json, as a Markdown table on stdout.
#
#   bench/model_table.sh OUT_DIR [extra init_server flags...]
#
# Every run: Fashion-MNIST (Debian's dataset-fashion-mnist), --train_samples 20000,
# --test_samples 5000, 1 epoch, --node_count 4, --batch_size 32, --threads 1, seed 1; the
# learning rate is each optimiser's usual one (sgd 0.05 with momentum 0.9; adam 0.001; rmsprop
# 0.001). `script:` models are written by tests/python/make_models.py into OUT_DIR/models
# (needs python3-torch). The CPU model and load average are printed before the table: the
# figures are only comparable between runs of one table on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/model_table.sh OUT_DIR [init_server flags...]}
shift
mkdir -p "$out/models"
/usr/bin/python3 tests/python/make_models.py "$out/models" >/dev/null
common=(--dataset fashion-mnist --train_samples 20000 --test_samples 5000 --epochs 1
        --node_count 4 --batch_size 32 --threads 1 --seed 1 "$@")
rate() { case $1 in sgd) echo 0.05 ;; *) echo 0.001 ;; esac; }
runs=(
  "mlp sgd ssgd" "mlp sgd asgd" "mlp sgd allreduce" "mlp sgd local_sgd"
  "mlp adam ssgd" "mlp adam asgd" "mlp adam allreduce" "mlp adam local_sgd"
  "mlp rmsprop ssgd" "mlp rmsprop asgd"
  "cnn sgd ssgd" "cnn adam ssgd" "cnn sgd allreduce" "cnn adam allreduce"
  "script:fashion_cnn.pt sgd ssgd" "script:fashion_cnn.pt adam ssgd"
  "script:fashion_cnn.pt sgd asgd" "script:fashion_cnn.pt adam allreduce"
)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | optimizer | psgd | test accuracy | samples/s | wall s | load avg (1 min) after |"
echo "|---|---|---|---|---|---|---|"
for r in "${runs[@]}"; do
  read -r model opt psgd <<<"$r"
  name="${model//[:\/.]/_}-$opt-$psgd"
  m=$model
  [[ $m == script:* ]] && m="script:$out/models/${m#script:}"
  dir="$out/$name"
  rm -rf "$dir"
  if scripts/run_local.sh "${common[@]}" --model "$m" --optimizer "$opt" --learn_rate "$(rate "$opt")" \
      --psgd "$psgd" --output "$dir" >"$out/$name.log" 2>&1; then
    python3 - "$dir/summary.json" "$model" "$opt" "$psgd" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {100 * s['final_test_accuracy']:.2f} % | "
      f"{s['samples_per_second']:,.0f} | {s['wall_seconds']:.1f} | {sys.argv[5]} |")
PY
  else
    echo "| $model | $opt | $psgd | failed: $(tail -1 "$out/$name.log") | | | |"
  fi
done
