#!/usr/bin/env bash
# Run one psgd job on this machine: init_server plus --node_count local clients.
#
#   scripts/run_local.sh [--slow_worker F] [init_server flags...]
#
# --slow_worker F starts the last client with --slowdown F (a straggler whose compute takes F
# times as long); it is the script's own flag. Every other flag is passed to init_server (see build/experiments/init_server --help); the script reads
# --node_count (default 4) to know how many clients to start, listens on a free port unless
# --working_ports is given, and writes the server's and the clients' logs to <run dir>/logs/.
# Ctrl-C stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
[[ -x $BIN/init_server && -x $BIN/client ]] || {
  echo "run_local: $BIN/init_server not built; run scripts/build.sh first" >&2
  exit 1
}

nodes=4 psgd=ssgd codec=plain output="" port="" slow=1
args=()
while (($#)); do
  case "$1" in
    --slow_worker) slow=${2:-}; shift 2 ;;
    --slow_worker=*) slow=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --node_count) nodes=${args[i + 1]:-} ;;
    --node_count=*) nodes=${args[i]#*=} ;;
    --psgd) psgd=${args[i + 1]:-} ;;
    --codec) codec=${args[i + 1]:-} ;;
    --output) output=${args[i + 1]:-} ;;
    --output=*) output=${args[i]#*=} ;;
    --working_ports) port=${args[i + 1]%%,*} ;;
    -h | --help) exec "$BIN/init_server" --help ;;
  esac
done
[[ $nodes =~ ^[0-9]+$ && $nodes -ge 1 ]] || {
  echo "run_local: --node_count must be a positive number (got '$nodes')" >&2
  exit 2
}
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

echo "run_local: starting init_server and $nodes clients; logs in $output/logs/"
"$BIN/init_server" "${args[@]}" "${extra[@]}" --port_file "$port_file" \
  > >(tee "$output/logs/server.log") 2> >(tee "$output/logs/server.err" >&2) &
server=$!
pids+=("$server")
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
