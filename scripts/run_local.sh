#!/usr/bin/env bash
# Run one psgd job on this machine: init_server plus one local client per worker.
#
#   scripts/run_local.sh [--slow_worker F] [--emulate [network flags]] [init_server flags...]
#
# --slow_worker F starts the last client with --slowdown F (a straggler whose compute takes F
# times as long); it is the script's own flag. Every other flag, --config FILE included, goes to
# init_server (see build/experiments/init_server --help). Before starting anything the script asks
# `init_server --check` for the job those flags make, and starts as many clients as its node_count
# (from the flags or the --config file); flags init_server refuses stop it there with
# init_server's reason (exit 2). It listens on a free port unless --working_ports is on its
# command line, writes the server's and the clients' logs to <run dir>/logs/, and with --simulate
# runs init_server alone (it simulates the workers itself). Ctrl-C stops every process it started.
# A passphrase (--passphrase_file F, on the command line or in --config, or $PSGD_PASSPHRASE) is
# given to every client as well. --cluster F (a cluster file) runs its job here: as many local
# clients as its slots, on its port, with its passphrase file.
#
# --emulate: an emulated LAN (needs root and iproute2; scripts/netns.sh builds it). The server and
# every worker run in a network namespace of their own, each on its own link to a switch, capped
# in both directions, so real TCP between them goes at the rate of a real network. The network
# flags are the simulator's (init_server --simulate), with the same meaning:
#   --net_bandwidth RATE     every worker's link (default 1Gbps; bps, Kbps, Mbps, Gbps)
#   --server_bandwidth RATE  the server's link (default: --net_bandwidth)
#   --host_bandwidth W:RATE,...   worker W's link (a host on a slower network)
#   --net_latency D          one-way latency (needs the kernel's netem qdisc; where it is absent
#                            only 0 is accepted, and the run says latency is not emulated)
#   --net_mtu BYTES          every link's MTU (default 1500)
# Shared memory is off (as between machines), the server listens on its namespace's address and
# workers prove a passphrase (a random one unless $PSGD_PASSPHRASE or --passphrase_file is given).
# config.json records the network under "network". Everything the run made (namespaces, links,
# processes) is removed when it ends, fails or is interrupted.
#
# Relative paths (--output, --config, --model script:F, --dataset npy:..., a passphrase file) are
# the caller's: every process starts in the directory the script was run from, as init_server
# itself would. Without --output the run goes to runs/<time>-<psgd>-<codec>-n<nodes> there (the
# repository's runs/ when run from the repository, as the README's commands are). A relative
# BUILD_DIR (default build) is the repository's, as for scripts/build.sh.
set -euo pipefail
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir=$ROOT/$build_dir
BIN=$build_dir/experiments
[[ -x $BIN/init_server && -x $BIN/client ]] || {
  echo "run_local: $BIN/init_server not built; run scripts/build.sh first" >&2
  exit 1
}

slow=1 port="" emulate=no
args=() net=()
while (($#)); do
  case "$1" in
    --slow_worker) slow=${2:-}; shift 2 ;;
    --slow_worker=*) slow=${1#*=}; shift ;;
    -h | --help) exec "$BIN/init_server" --help ;;
    --emulate) emulate=yes; shift ;;
    --net_bandwidth | --server_bandwidth | --host_bandwidth | --net_latency | --net_mtu)
      (($# >= 2)) || { echo "run_local: $1 needs a value" >&2; exit 2; }
      net+=("$1" "$2"); shift 2 ;;
    --net_bandwidth=* | --server_bandwidth=* | --host_bandwidth=* | --net_latency=* | --net_mtu=*)
      net+=("${1%%=*}" "${1#*=}"); shift ;;
    --working_ports) port=${2:-}; args+=("$1"); shift ;;
    --working_ports=*) port=${1#*=}; args+=("$1"); shift ;;
    --cluster | --cluster=*) port=cluster; args+=("$1"); shift ;;  # the file's port
    *) args+=("$1"); shift ;;
  esac
done
# Without --emulate the network flags are init_server's (--simulate's, or refused by it).
[[ $emulate == yes ]] || args+=("${net[@]}")
# The job as init_server reads it; a refusal is on stderr already.
source "$ROOT/scripts/job_check.sh"
job_of "$BIN/init_server" "${args[@]}" || exit 2
nodes=${job[0]} psgd=${job[1]} codec=${job[2]} output=${job[3]} simulate=${job[4]}
passphrase_file=${job[5]}
if [[ $simulate == yes && $slow != 1 ]]; then
  echo "run_local: --slow_worker slows a real client; with --simulate give init_server --stragglers WORKER:xFACTOR" >&2
  exit 2
fi

if [[ $emulate == yes ]]; then
  source "$ROOT/scripts/netns.sh"
  die() { echo "run_local: --emulate: $*" >&2; exit 2; }
  [[ $simulate == no ]] || die "--simulate models the network itself; give its --net_* flags without --emulate"
  [[ $psgd != allreduce || ${job[6]} != shm ]] ||
    die "--allreduce_backend shm sums in one machine's shared memory, which emulated hosts do not share; use --allreduce_backend ring"
  for f in "${args[@]}"; do
    case "$f" in
      --bind | --bind=* | --shared_memory | --shared_memory=* | --network_file | --network_file=*)
        die "$f is set by the emulation (the server's address in its namespace, no shared memory, the network's description)" ;;
    esac
  done
  netns_available || die "$NETNS_WHY"
  link=1Gbps server_link="" latency=0 mtu=1500
  declare -A host_link=()
  for ((i = 0; i < ${#net[@]}; i += 2)); do
    flag=${net[i]} value=${net[i + 1]}
    case $flag in
      --net_bandwidth) link=$value ;;
      --server_bandwidth) server_link=$value ;;
      --net_latency) latency=$value ;;
      --net_mtu) mtu=$value ;;
      --host_bandwidth)
        IFS=, read -ra items <<<"$value"
        for item in "${items[@]}"; do
          [[ $item =~ ^([0-9]+):(.+)$ ]] || die "--host_bandwidth $value: write WORKER:RATE,... e.g. 3:10Mbps"
          ((BASH_REMATCH[1] < nodes)) || die "--host_bandwidth $value: worker ${BASH_REMATCH[1]} does not exist (0 to $((nodes - 1)))"
          netns_rate_bps "${BASH_REMATCH[2]}" >/dev/null 2>&1 ||
            die "--host_bandwidth $value: $(netns_rate_bps "${BASH_REMATCH[2]}" 2>&1)"
          host_link[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        done ;;
    esac
  done
  server_link=${server_link:-$link}
  for pair in "--net_bandwidth $link" "--server_bandwidth $server_link"; do
    read -r flag value <<<"$pair"
    netns_rate_bps "$value" >/dev/null 2>&1 || die "$flag $value: $(netns_rate_bps "$value" 2>&1)"
  done
  latency_s=$(netns_delay_s "$latency" 2>&1) || die "--net_latency $latency: $latency_s"
  [[ $mtu =~ ^[0-9]+$ ]] && ((mtu >= 576 && mtu <= 65535)) || die "--net_mtu $mtu: give 576 to 65535 bytes"
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
  if [[ $emulate == yes ]]; then netns_teardown || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

server_at=() client_at=() server_ip=127.0.0.1 client_extra=()
if [[ $emulate == yes ]]; then
  names=(server)
  for ((w = 0; w < nodes; w++)); do names+=("worker$w"); done
  netns_cluster_create "${names[@]}" || exit 1
  if [[ $latency_s != 0 && $NETNS_NETEM != yes ]]; then
    die "--net_latency $latency: this kernel has no netem qdisc, so latency cannot be emulated (give 0, or run where netem exists)"
  fi
  netns_link 0 "$server_link" "$latency" "$mtu" || exit 1
  for ((w = 0; w < nodes; w++)); do
    netns_link $((w + 1)) "${host_link[$w]:-$link}" "$latency" "$mtu" || exit 1
  done
  netns_describe > "$output/logs/network.json"
  server_ip=$(netns_ip 0)
  server_at=(ip netns exec "$(netns_ns 0)")
  extra+=(--bind "$server_ip" --shared_memory off --network_file "$output/logs/network.json")
  client_extra=(--shared_memory off)
  if [[ -z $passphrase_file && -z ${PSGD_PASSPHRASE:-} ]]; then
    PSGD_PASSPHRASE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export PSGD_PASSPHRASE
  fi
  echo "run_local: emulated LAN: server $server_ip at $server_link, workers at $link$(
    for w in "${!host_link[@]}"; do printf ', worker %s at %s' "$w" "${host_link[$w]}"; done
  ), MTU $mtu, $([[ $NETNS_NETEM == yes ]] && echo "latency $latency" || echo "latency not emulated (no netem in this kernel)")"
fi

# The server's passphrase file (from the flags or --config) is the clients' too; $PSGD_PASSPHRASE
# reaches them through the environment.
[[ -n $passphrase_file ]] && client_extra+=(--passphrase_file "$passphrase_file")

if [[ $simulate == yes ]]; then
  echo "run_local: starting init_server --simulate (it runs the $nodes workers itself); logs in $output/logs/"
  port_args=()
else
  echo "run_local: starting init_server and $nodes clients; logs in $output/logs/"
  port_args=(--port_file "$port_file")
fi
"${server_at[@]}" "$BIN/init_server" "${args[@]}" "${extra[@]}" "${port_args[@]}" \
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
  client_args=(--ip "$server_ip" --port "$port" "${client_extra[@]}")
  ((w == nodes - 1)) && client_args+=(--slowdown "$slow")
  [[ $emulate == yes ]] && client_at=(ip netns exec "$(netns_ns $((w + 1)))")
  "${client_at[@]}" "$BIN/client" "${client_args[@]}" > "$output/logs/client-$w.log" 2>&1 &
  pids+=("$!")
done
rc=0
wait "$server" || rc=$?
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
pids=()
exit $rc
