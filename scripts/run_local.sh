#!/usr/bin/env bash
# Run one psgd job on this machine: init_server plus one local client per worker.
#
#   scripts/run_local.sh [--slow_worker F] [init_server flags...]
#
# --slow_worker F starts the last client with --slowdown F (a straggler whose compute takes F
# times as long); it is the script's own flag. Every other flag, --config FILE included, goes to
# init_server (see build/experiments/init_server --help). Before starting anything the script asks
# `init_server --check` for the job those flags make, and starts as many clients as its node_count
# (from the flags or the --config file); flags init_server refuses stop it there with
# init_server's reason (exit 2). It listens on a free port unless --working_ports is on its
# command line, writes the server's and the clients' logs to <run dir>/logs/, and with --simulate
# runs init_server alone (it simulates the workers itself). Ctrl-C stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
[[ -x $BIN/init_server && -x $BIN/client ]] || {
  echo "run_local: $BIN/init_server not built; run scripts/build.sh first" >&2
  exit 1
}

slow=1 port=""
args=()
while (($#)); do
  case "$1" in
    --slow_worker) slow=${2:-}; shift 2 ;;
    --slow_worker=*) slow=${1#*=}; shift ;;
    -h | --help) exec "$BIN/init_server" --help ;;
    --working_ports) port=${2:-}; args+=("$1"); shift ;;
    --working_ports=*) port=${1#*=}; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# The job as init_server reads it; a refusal is on stderr already.
source scripts/job_check.sh
job_of "$BIN/init_server" "${args[@]}" || exit 2
nodes=${job[0]} psgd=${job[1]} codec=${job[2]} output=${job[3]} simulate=${job[4]}
if [[ $simulate == yes && $slow != 1 ]]; then
  echo "run_local: --slow_worker slows a real client; with --simulate give init_server --stragglers WORKER:xFACTOR" >&2
  exit 2
fi
extra=()
if [[ -z $output ]]; then
  output="runs/$(date -u +%Y%m%d-%H%M%S)-$psgd-$codec-n$nodes"
  extra+=(--output "$output")
fi
[[ -z $port ]] && extra+=(--working_ports 0)
mkdir -p "$output/logs"
port_file="$output/logs/port"
rm -f "$port_file"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $simulate == yes ]]; then
  echo "run_local: starting init_server --simulate (it runs the $nodes workers itself); logs in $output/logs/"
  port_args=()
else
  echo "run_local: starting init_server and $nodes clients; logs in $output/logs/"
  port_args=(--port_file "$port_file")
fi
"$BIN/init_server" "${args[@]}" "${extra[@]}" "${port_args[@]}" \
  > >(tee "$output/logs/server.log") 2> >(tee "$output/logs/server.err" >&2) &
server=$!
pids+=("$server")
if [[ $simulate == yes ]]; then
  rc=0
  wait "$server" || rc=$?
  pids=()
  exit $rc
fi
for _ in $(seq 600); do
  [[ -s $port_file ]] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -s $port_file ]]; then
  wait "$server" || exit $?
  echo "run_local: init_server did not start listening" >&2
  exit 1
fi
port=$(cat "$port_file")
for ((w = 0; w < nodes; w++)); do
  client_args=(--ip 127.0.0.1 --port "$port")
  ((w == nodes - 1)) && client_args+=(--slowdown "$slow")
  "$BIN/client" "${client_args[@]}" > "$output/logs/client-$w.log" 2>&1 &
  pids+=("$!")
done
rc=0
wait "$server" || rc=$?
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
pids=()
exit $rc
