#!/usr/bin/env bash
# The first command of the README: install what is missing, build, and train the built-in default
# job (4 local workers, ssgd, plain codec, MLP on Fashion-MNIST), then write and show its report.
# Extra arguments go to init_server, e.g. scripts/demo.sh --epochs 10 --model cnn
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
out="runs/$(date -u +%Y%m%d-%H%M%S)-demo"
scripts/run_local.sh --node_count 4 --output "$out" "$@"
report=$(/usr/bin/python3 scripts/report.py "$out")
echo
echo "demo: report: $report (report.md and plots beside it); raw results in $out/"
echo "demo: next: scripts/run_local.sh --help for every option, or try --model cnn / --node_count 8"
