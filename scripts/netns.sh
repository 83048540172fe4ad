#!/usr/bin/env bash
# shellcheck shell=bash
# Hosts on one machine: a cluster of Linux network namespaces, every host on its own link to a
# switch, each link capped in both directions with `tc tbf` (and delayed with `tc netem` where the
# kernel has it). Used by scripts/run_local.sh --emulate; meant for any script that needs real
# TCP between "machines" at a chosen bandwidth. Needs root and iproute2 (ip, tc).
#
# The topology (OWNER is the pid of the shell that created the cluster, so two runs never collide;
# everything lives in namespaces the cluster made: nothing is added to the machine's own network):
#
#   namespace psgd-OWNER-sw   the switch: a bridge br0 and one veth end per host, named h<I>
#   namespace psgd-OWNER-h<I> host I: the other veth end, eth0, address 10.X.Y.Z/16, lo up
#
# A host's rate cap shapes both directions of its link: tbf on its eth0 (what it sends) and on the
# switch's h<I> (what it receives), so every host has a full-duplex port of that rate, as the
# simulator's network model has (network/sim/network_model.h). The rate counts whole Ethernet
# frames (IP and TCP headers included), so TCP payload gets about (MTU - 52) / (MTU + 14) of it
# (95.6 % at MTU 1500).
#
# As a command:
#   scripts/netns.sh check            exit 0 when this machine can build clusters, else 1 and why
#   scripts/netns.sh netem            exit 0 when the kernel has the netem qdisc (latency), else 1
#   scripts/netns.sh list             the clusters on this machine: owner pid, alive or stale
#   scripts/netns.sh teardown OWNER   remove the cluster of process OWNER (its processes too)
#   scripts/netns.sh cleanup          remove every cluster whose owner process has exited
#
# Sourced (`source scripts/netns.sh`), in the calling shell (OWNER = $$):
#   netns_available                   0, or 1 with NETNS_WHY set to a one-line reason
#   netns_cluster_create NAME...      one host per NAME (host 0 is the first; names are labels
#                                     for netns_describe, e.g. server worker0 worker1); then
#                                     NETNS_HOSTS (count), NETNS_NETEM (yes|no). Fails (1, one line
#                                     on stderr) leaving nothing behind.
#   netns_ns I / netns_ip I           print host I's namespace / address
#   netns_link I RATE [DELAY [MTU]]   cap host I's link at RATE (bps, Kbps, Mbps or Gbps, as the
#                                     simulator's --net_bandwidth) both ways; DELAY one way (s, ms,
#                                     us; 0 for none) needs netem: returns 3 with NETNS_WHY when
#                                     the kernel has none; MTU (default 1500) of the link
#   netns_exec I CMD...               run CMD in host I's namespace (ip netns exec: CMD keeps the
#                                     pid, the environment and the file system)
#   netns_describe                    print the cluster as JSON (hosts, addresses, caps, netem)
#   netns_teardown                    kill what still runs in the cluster's namespaces (TERM,
#                                     then KILL after 3 s) and delete them; idempotent
#   netns_trap                        make EXIT, INT and TERM call netns_teardown (INT and TERM
#                                     then exit 130 / 143); callers with traps of their own call
#                                     netns_teardown from them instead
#   netns_rate_bps RATE               print RATE in bits per second, or fail naming the syntax
#   netns_delay_s DELAY               print DELAY in seconds, or fail naming the syntax

NETNS_PREFIX=psgd
NETNS_OWNER=${NETNS_OWNER:-$$}
NETNS_HOSTS=0
NETNS_NETEM=""
NETNS_WHY=""
NETNS_NAMES=()
NETNS_RATE=()
NETNS_DELAY=()
NETNS_MTU=()

_netns_sw() { echo "$NETNS_PREFIX-$NETNS_OWNER-sw"; }
netns_ns() { echo "$NETNS_PREFIX-$NETNS_OWNER-h$1"; }
# 10.X.Y.Z/16: X from the owner's pid (any value would do, the namespaces are private), host I at
# Y.Z = I + 1, so up to 65,533 hosts.
netns_ip() { echo "10.$((NETNS_OWNER % 200 + 20)).$((($1 + 1) / 256)).$((($1 + 1) % 256))"; }

netns_rate_bps() {
  local re='^([0-9]+([.][0-9]+)?)([KkMmGg]?)(bps|b/s)$'
  if [[ ! $1 =~ $re ]]; then
    echo "'$1' is not a rate: write a number with bps, Kbps, Mbps or Gbps (e.g. 100Mbps)" >&2
    return 1
  fi
  local scale=1
  case ${BASH_REMATCH[3]} in [Kk]) scale=1e3 ;; [Mm]) scale=1e6 ;; [Gg]) scale=1e9 ;; esac
  awk -v v="${BASH_REMATCH[1]}" -v s="$scale" 'BEGIN { r = v * s; if (r < 8000) exit 1; printf "%.0f\n", r }' ||
    { echo "'$1': a link below 8 Kbps cannot carry one frame per second" >&2; return 1; }
}

netns_delay_s() {
  local re='^([0-9]+([.][0-9]+)?)(s|ms|us|ns)?$'
  if [[ ! $1 =~ $re ]] || [[ -z ${BASH_REMATCH[3]} && ${BASH_REMATCH[1]} != 0 ]]; then
    echo "'$1' is not a duration: write a number with s, ms, us or ns (e.g. 1ms), or 0" >&2
    return 1
  fi
  local scale=1
  case ${BASH_REMATCH[3]} in ms) scale=1e-3 ;; us) scale=1e-6 ;; ns) scale=1e-9 ;; esac
  awk -v v="${BASH_REMATCH[1]}" -v s="$scale" 'BEGIN { printf "%.9g\n", v * s }'
}

netns_available() {
  NETNS_WHY=""
  if [[ $(id -u) != 0 ]]; then
    NETNS_WHY="emulating hosts needs root (network namespaces and tc)"
  elif ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    NETNS_WHY="emulating hosts needs iproute2 (ip and tc): apt-get install iproute2"
  else
    local probe="$NETNS_PREFIX-$NETNS_OWNER-probe"
    if ! ip netns add "$probe" 2>/dev/null; then
      NETNS_WHY="'ip netns add' failed here (a container without CAP_SYS_ADMIN?)"
    else
      if ! ip -n "$probe" link add br0 type bridge 2>/dev/null; then
        NETNS_WHY="this kernel cannot make a bridge inside a network namespace"
      fi
      ip netns del "$probe" 2>/dev/null
    fi
  fi
  [[ -z $NETNS_WHY ]]
}

# One command of the cluster's set-up; on failure says which and returns 1.
_netns_do() {
  local out
  if ! out=$("$@" 2>&1); then
    echo "netns: '$*' failed: ${out//$'\n'/ }" >&2
    return 1
  fi
}

netns_cluster_create() {
  (($# >= 1)) || { echo "netns_cluster_create: give one name per host" >&2; return 1; }
  netns_available || { echo "netns: $NETNS_WHY" >&2; return 1; }
  NETNS_NAMES=("$@")
  NETNS_HOSTS=$#
  NETNS_RATE=() NETNS_DELAY=() NETNS_MTU=()
  local sw i ns
  sw=$(_netns_sw)
  if ip netns list | grep -q "^$NETNS_PREFIX-$NETNS_OWNER-"; then
    echo "netns: process $NETNS_OWNER already has a cluster (netns_teardown first)" >&2
    return 1
  fi
  {
    _netns_do ip netns add "$sw" &&
      _netns_do ip -n "$sw" link set lo up &&
      _netns_do ip -n "$sw" link add br0 type bridge &&
      _netns_do ip -n "$sw" link set br0 up
  } || { netns_teardown; return 1; }
  # netem: try it once on the bridge (nothing flows there yet).
  if tc -n "$sw" qdisc add dev br0 root netem delay 1ms 2>/dev/null; then
    NETNS_NETEM=yes
    tc -n "$sw" qdisc del dev br0 root 2>/dev/null
  else
    NETNS_NETEM=no
  fi
  for ((i = 0; i < NETNS_HOSTS; i++)); do
    ns=$(netns_ns "$i")
    {
      _netns_do ip netns add "$ns" &&
        _netns_do ip -n "$sw" link add "h$i" type veth peer name eth0 netns "$ns" &&
        _netns_do ip -n "$sw" link set "h$i" master br0 up &&
        _netns_do ip -n "$ns" addr add "$(netns_ip "$i")/16" dev eth0 &&
        _netns_do ip -n "$ns" link set eth0 up &&
        _netns_do ip -n "$ns" link set lo up
    } || { netns_teardown; return 1; }
    NETNS_RATE+=("") NETNS_DELAY+=(0) NETNS_MTU+=(1500)
  done
}

netns_link() {
  local i=$1 rate delay=${3:-0} mtu=${4:-1500} sw ns burst side dev_ns dev
  rate=$(netns_rate_bps "$2") || return 1
  delay=$(netns_delay_s "$delay") || return 1
  if [[ ! $mtu =~ ^[0-9]+$ ]] || ((mtu < 576 || mtu > 65535)); then
    echo "netns: MTU '$mtu' must be 576 to 65535" >&2
    return 1
  fi
  if [[ $delay != 0 && $NETNS_NETEM != yes ]]; then
    NETNS_WHY="this kernel has no netem qdisc, so latency cannot be emulated (links get only their rate cap)"
    return 3
  fi
  sw=$(_netns_sw) ns=$(netns_ns "$i")
  # Tokens (bytes) for 1 ms at the rate, at least 4 KB and 3 full frames: the cap holds over any
  # interval longer than a millisecond and tbf never has to split a frame.
  burst=$(awk -v r="$rate" -v m="$mtu" 'BEGIN { b = r / 8000; if (b < 4000) b = 4000; if (b < 3 * (m + 14)) b = 3 * (m + 14); printf "%.0f\n", b }')
  _netns_do ip -n "$ns" link set eth0 mtu "$mtu" || return 1
  _netns_do ip -n "$sw" link set "h$i" mtu "$mtu" || return 1
  for side in "$ns eth0" "$sw h$i"; do
    read -r dev_ns dev <<<"$side"
    tc -n "$dev_ns" qdisc del dev "$dev" root 2>/dev/null || true
    _netns_do tc -n "$dev_ns" qdisc add dev "$dev" root handle 1: tbf rate "${rate}bit" \
      burst "$burst" latency 400ms || return 1
    if [[ $delay != 0 ]]; then
      # Half the one-way delay on each side: a message from host A to host B crosses A's eth0
      # and the switch's h<B>, so it is delayed by DELAY in all.
      _netns_do tc -n "$dev_ns" qdisc add dev "$dev" parent 1:1 handle 10: netem \
        delay "$(awk -v d="$delay" 'BEGIN { printf "%.0fus", d * 1e6 / 2 }')" limit 100000 || return 1
    fi
  done
  NETNS_RATE[i]=$rate NETNS_DELAY[i]=$delay NETNS_MTU[i]=$mtu
}

netns_exec() {
  local i=$1
  shift
  ip netns exec "$(netns_ns "$i")" "$@"
}

netns_describe() {
  local i sep=""
  printf '{"kind": "emulated", "how": "Linux network namespaces on one machine: every host on its own veth link to a bridge, the link capped in both directions with tc tbf%s", ' \
    "$([[ $NETNS_NETEM == yes ]] && echo ' and delayed with tc netem')"
  printf '"netem": %s, ' "$([[ $NETNS_NETEM == yes ]] && echo true || echo false)"
  if [[ $NETNS_NETEM != yes ]]; then
    printf '"latency": "not emulated: this kernel has no netem qdisc", '
  fi
  printf '"rate_counts": "Ethernet frames (TCP/IP headers included)", "hosts": ['
  for ((i = 0; i < NETNS_HOSTS; i++)); do
    printf '%s{"name": "%s", "namespace": "%s", "address": "%s", "rate_bps": %s, "one_way_delay_s": %s, "mtu": %s}' \
      "$sep" "${NETNS_NAMES[i]}" "$(netns_ns "$i")" "$(netns_ip "$i")" "${NETNS_RATE[i]:-null}" \
      "${NETNS_DELAY[i]}" "${NETNS_MTU[i]}"
    sep=", "
  done
  printf ']}\n'
}

# The namespaces of owner $1 (default: this shell's cluster).
_netns_of() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NETNS_PREFIX-${1:-$NETNS_OWNER}-(sw|h[0-9]+|probe)\$"
}

netns_teardown() {
  local owner=${1:-$NETNS_OWNER} names ns pids left i sig
  names=$(_netns_of "$owner") || true
  [[ -n $names ]] || return 0
  # What still runs inside: TERM, then KILL whatever has not exited after 3 s.
  for sig in TERM KILL; do
    pids=""
    for ns in $names; do pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
    [[ -z ${pids// /} ]] && break
    # shellcheck disable=SC2086
    kill -s "$sig" $pids 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
      left=""
      for ns in $names; do left+="$(ip netns pids "$ns" 2>/dev/null)"; done
      [[ -z $left ]] && break
      sleep 0.1
    done
  done
  for ns in $names; do ip netns del "$ns" 2>/dev/null || true; done
  if [[ $owner == "$NETNS_OWNER" ]]; then NETNS_HOSTS=0; fi
  if _netns_of "$owner" >/dev/null; then
    echo "netns: could not delete every namespace of process $owner: $(_netns_of "$owner" | tr '\n' ' ')" >&2
    return 1
  fi
}

netns_trap() {
  trap 'netns_teardown' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Run as a command (not sourced).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  case ${1:-} in
    check)
      if netns_available; then echo "netns: this machine can emulate hosts (root, ip, tc; netem is checked per cluster)"; exit 0; fi
      echo "netns: $NETNS_WHY" >&2
      exit 1
      ;;
    netem)
      netns_available || { echo "netns: $NETNS_WHY" >&2; exit 1; }
      p="$NETNS_PREFIX-$NETNS_OWNER-probe"
      ip netns add "$p" && ip -n "$p" link add br0 type bridge
      if tc -n "$p" qdisc add dev br0 root netem delay 1ms 2>/dev/null; then ok=0; else ok=1; fi
      ip netns del "$p"
      if ((ok == 0)); then echo "netns: this kernel has netem: links can be delayed"; else echo "netns: this kernel has no netem qdisc: latency cannot be emulated, only rate caps" >&2; fi
      exit $ok
      ;;
    list)
      ip netns list 2>/dev/null | awk '{print $1}' | sed -nE "s/^$NETNS_PREFIX-([0-9]+)-(sw|h[0-9]+|probe)\$/\1/p" | sort -u |
        while read -r owner; do
          if kill -0 "$owner" 2>/dev/null; then s=alive; else s=stale; fi
          echo "$owner $s $(_netns_of "$owner" | wc -l) namespaces"
        done
      ;;
    teardown)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "usage: scripts/netns.sh teardown OWNER_PID" >&2; exit 2; }
      netns_teardown "$2"
      ;;
    cleanup)
      rc=0
      for owner in $("$0" list | awk '$2 == "stale" {print $1}'); do
        echo "netns: removing the cluster of exited process $owner"
        netns_teardown "$owner" || rc=1
      done
      exit $rc
      ;;
    *)
      echo "usage: scripts/netns.sh check | netem | list | teardown OWNER_PID | cleanup (or source it; see its top)" >&2
      exit 2
      ;;
  esac
fi
