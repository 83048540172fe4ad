#!/usr/bin/env bash
# A local sweep over node counts, as the original platform's: one init_server per node count, each
# on its own port, with its clients, on this machine.
#
#   scripts/launch_local.sh --nodes 1,2,4 [--base_port auto|P] [--out DIR] [--parallel] [--dry_run]
#                           [-- init_server flags...]
#
# Ports: by default (auto) each server takes a free port and its clients are told which, so a sweep
# never collides with another program; --base_port P puts run i on port P + i instead.
# Runs go one after another (timings stay honest on a small machine) unless --parallel starts every
# server and its clients at once. Run directories: DIR/n<nodes> (default runs/<time>-local-sweep),
# each with its logs in logs/. Flags after -- go to every init_server (not --node_count,
# --working_ports or --output: the script sets those). Exit status: 0 when every run completed;
# a run that failed is named with init_server's reason.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "launch_local: $*" >&2; exit 2; }

nodes="" base_port=auto out="" parallel=0 dry=0
while (($#)); do
  case "$1" in
    --nodes) nodes=${2:-}; shift 2 ;;
    --base_port) base_port=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --parallel) parallel=1; shift ;;
    --dry_run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown argument '$1' (init_server flags go after --; see --help)" ;;
  esac
done
flags=("$@")
[[ -n $nodes ]] || die "--nodes is required, e.g. --nodes 1,2,4"
IFS=, read -r -a counts <<< "$nodes"
for n in "${counts[@]}"; do
  [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "--nodes: '$n' is not a positive number"
done
if [[ $base_port != auto ]]; then
  [[ $base_port =~ ^[0-9]+$ && $base_port -ge 1024 && $((base_port + ${#counts[@]})) -le 65535 ]] ||
    die "--base_port $base_port: give auto (a free port per run) or 1024..$((65535 - ${#counts[@]}))"
fi
simulate=0
for f in "${flags[@]}"; do
  [[ $f == --simulate ]] && simulate=1
  case "$f" in
    --node_count* | --working_ports* | --output* | --port_file*) die "$f is set by this script" ;;
  esac
done
[[ -n $out ]] || out="runs/$(date -u +%Y%m%d-%H%M%S)-local-sweep"
if ((!dry)); then
  [[ -x $BIN/init_server && -x $BIN/client ]] || die "$BIN/init_server not built; run scripts/build.sh"
fi

port_of() { # index -> the port flag's value (0: a free one, written to the run's logs/port)
  if [[ $base_port == auto ]]; then echo 0; else echo $((base_port + $1)); fi
}
server_cmd() { # nodes index
  local ports="--working_ports $(port_of "$2")"
  [[ $base_port == auto ]] && ports+=" --port_file $out/n$1/logs/port"
  echo "$BIN/init_server --node_count $1 $ports --output $out/n$1 ${flags[*]}"
}
echo "launch_local: ${#counts[@]} run(s) in $out, $([[ $parallel == 1 ]] && echo "all at once" || echo "one after another"):"
for i in "${!counts[@]}"; do
  n=${counts[i]}
  echo "  n=$n: $(server_cmd "$n" "$i")"
  if ((simulate)); then
    echo "        (its $n workers simulated by init_server: no clients)"
  else
    echo "        + $n x $BIN/client --ip 127.0.0.1 --port $([[ $base_port == auto ]] && echo "<the port it took>" || port_of "$i")"
  fi
done
((dry)) && exit 0

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start_one() { # index; sets server_pid ("" when skipped or when the server never listened)
  local n=${counts[$1]} port dir="$out/n${counts[$1]}"
  server_pid=""
  if [[ -f $dir/summary.json ]]; then
    echo "launch_local: $dir already holds a finished run; skipping n=$n" >&2
    return
  fi
  mkdir -p "$dir/logs"
  rm -f "$dir/logs/port"
  local ports=(--working_ports "$(port_of "$1")")
  [[ $base_port == auto ]] && ports+=(--port_file "$dir/logs/port")
  "$BIN/init_server" --node_count "$n" "${ports[@]}" --output "$dir" "${flags[@]}" \
    > "$dir/logs/server.log" 2> "$dir/logs/server.err" &
  server_pid=$!
  pids+=("$server_pid")
  if [[ $base_port == auto ]]; then
    # The server writes its port once its data is loaded and it listens; it may also stop first
    # (a refused flag, or --simulate, which needs no clients). Its own timeouts bound the wait.
    while [[ ! -s $dir/logs/port ]] && kill -0 "$server_pid" 2>/dev/null; do sleep 0.1; done
    [[ -s $dir/logs/port ]] || return 0
    port=$(cat "$dir/logs/port")
  else
    port=$(port_of "$1")
  fi
  ((simulate)) && return 0
  for ((w = 0; w < n; w++)); do
    "$BIN/client" --ip 127.0.0.1 --port "$port" > "$dir/logs/client-$w.log" 2>&1 &
    pids+=("$!")
  done
}

# Why a run ended: init_server's last error line when it failed, else its last line.
outcome() { # nodes rc
  local dir="$out/n$1"
  if (($2 != 0)) && [[ -s $dir/logs/server.err ]]; then
    tail -n 1 "$dir/logs/server.err"
  else
    tail -n 1 "$dir/logs/server.log"
  fi
}

failed=0
servers=()
for i in "${!counts[@]}"; do
  start_one "$i"
  [[ -z $server_pid ]] && continue
  if ((parallel)); then
    servers+=("$server_pid:${counts[i]}")
  else
    rc=0; wait "$server_pid" || rc=$?
    echo "launch_local: n=${counts[i]} finished with exit code $rc ($(outcome "${counts[i]}" "$rc"))"
    # A server that failed leaves its clients dialling: stop them rather than wait them out.
    ((rc == 0)) || cleanup
    ((rc == 0)) || failed=$((failed + 1))
  fi
done
for s in "${servers[@]}"; do
  rc=0; wait "${s%%:*}" || rc=$?
  echo "launch_local: n=${s##*:} finished with exit code $rc ($(outcome "${s##*:}" "$rc"))"
  ((rc == 0)) || failed=$((failed + 1))
done
wait || true
pids=()
echo "launch_local: $failed run(s) failed; report with: scripts/report.py $out"
((failed == 0))
