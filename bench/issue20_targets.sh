#!/usr/bin/env bash
# Every figure issue 20 sets a target for, in one invocation, for a session that finds a quiet
# machine or another CPU (an Intel VM): one worker against the plain loop, four workers against
# DDP and the compute limit (MLP and CNN), psgd's engine against the same loop in Python, the
# compressed allreduces against DDP's hooks, and allreduce --overlap on the CNN. Each part is an
# existing benchmark (bench/README.md says what each measures and how to read it); this script
# only runs them one after another, with the CPU model and the load average before and after
# each, and keeps every output in one directory.
#
#   bench/issue20_targets.sh [OUT_DIR]      # default /tmp/psgd-issue20-<time>; about 18 minutes
#
# Needs a build (scripts/build.sh) and Debian's python3-torch (bench/setup_ddp.sh checks). Run it
# on an otherwise idle machine: other processes on the cores change every ratio (bench/README.md,
# "What limits the targets on the shared AMD VM").
#
# On a KVM guest the figures for one worker also depend on the guest's halt polling (how long an
# idle vCPU spins before it halts: /sys/module/haltpoll/parameters/guest_halt_poll_ns; a VM whose
# kernel command line sets it to 0 halts at once, and every wake-up is a VM exit and entry). The
# script prints it with the CPU. GUEST_HALT_POLL_NS=N (root) sets it to N for the run and restores
# it at the end (bench/README.md, "Guest halt polling").
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/psgd-issue20-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
build=${BUILD_DIR:-build}
if [[ ! -x $build/bench/ssgd_vs_plain || ! -x $build/experiments/init_server ]]; then
  echo "issue20_targets: no build in $build (run scripts/build.sh, or set BUILD_DIR)" >&2
  exit 2
fi
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cpu+=" (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')"
cpu+=" model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
halt_poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [[ -n ${GUEST_HALT_POLL_NS:-} ]]; then
  if [[ ! -w $halt_poll ]]; then
    echo "issue20_targets: GUEST_HALT_POLL_NS needs root and a KVM guest with the haltpoll driver" \
      "($halt_poll is not writable here)" >&2
    exit 2
  fi
  previous_halt_poll=$(cat "$halt_poll")
  trap 'echo "$previous_halt_poll" >"$halt_poll"' EXIT
  echo "$GUEST_HALT_POLL_NS" >"$halt_poll"
fi
if [[ -r $halt_poll ]]; then
  cpu+=", guest halt polling $(cat "$halt_poll") ns"
else
  cpu+=", no guest halt polling driver"
fi
echo "issue20_targets: $cpu, $(nproc) cores; outputs in $out"

# part NAME COMMAND...: runs one benchmark, its output to $out/NAME.txt, with the load around it.
part() {
  local name=$1
  shift
  echo "== $name: $*"
  {
    echo "cpu: $cpu"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: $*"
    "$@"
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$out/$name.txt" 2>&1 || echo "   (exit $?; see $out/$name.txt)"
  tail -n 12 "$out/$name.txt" | sed 's/^/   /'
}

part one_worker "$build/bench/ssgd_vs_plain" --epochs 2 --repeats 5 --busy_poll_us 2000
part mlp_4_workers bench/ddp_compare.py --epochs 2 --workers 4 --repeats 2
part cnn_4_workers bench/ddp_compare.py --model cnn --epochs 1 --workers 4 --repeats 2
part engine bench/engine_compare.py --repeats 3 --steps 60
part compressed bench/ddp_compare.py --epochs 2 --workers 4 --repeats 1 \
  --systems ddp,allreduce,ddp_fp16,allreduce_fp16,ddp_powersgd,allreduce_powersgd
part overlap_cnn bench/overlap_compare.sh --repeats 2 --psgd allreduce
# Overlap hides communication, so it needs a link slower than loopback: two workers on an emulated
# 500 Mbit/s LAN (root only). Jumbo frames, because at 1500 bytes the emulation's per-packet work
# (veth, bridge, tbf) runs on the same 2 cores as the workers' backward and slows it by half
# (bench/README.md, "allreduce --overlap on an emulated LAN").
if [[ $(id -u) == 0 ]]; then
  part overlap_cnn_lan bench/overlap_compare.sh --repeats 3 --psgd allreduce --node_count 2 \
    --emulate --net_bandwidth 500Mbps --net_mtu 9000
else
  echo "== overlap_cnn_lan: skipped (the emulated LAN needs root)"
fi
echo "issue20_targets: done; every output with its load in $out"
