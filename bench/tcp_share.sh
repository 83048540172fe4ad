#!/usr/bin/env bash
# How unequally do TCP streams share a capped link? The measurement behind the simulator's
# --net_unfairness (network/sim/network_model.h). Needs root and iproute2 (scripts/netns.sh).
#
#   bench/tcp_share.sh [--streams 4] [--net_bandwidth 100Mbps] [--bytes 814160] [--repeats 8]
#
# A server host sends BYTES (default: one MLP parameter frame) to each of STREAMS receivers at
# once, every host on its own link capped at the rate, as init_server broadcasts parameters; each
# receiver notes when its last byte arrived. Per repeat it prints the completion times sorted, as
# fractions of the last one, then the mean fraction per rank beside what the simulator's model
# gives for the same transfers (weights uniform in [1 - u, 1 + u], u = 0, 0.5 and 0.8, averaged
# over 4000 draws): the yardstick is in the same output.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=4 rate=100Mbps bytes=814160 repeats=8
while (($#)); do
  case $1 in
    --streams) streams=$2; shift 2 ;;
    --net_bandwidth) rate=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    *) echo "tcp_share: unknown argument '$1' (see the top of $0)" >&2; exit 2 ;;
  esac
done
for v in "$streams" "$bytes" "$repeats"; do
  [[ $v =~ ^[0-9]+$ && $v -ge 1 ]] || { echo "tcp_share: '$v' is not a positive number" >&2; exit 2; }
done
source scripts/netns.sh
netns_available || { echo "tcp_share: $NETNS_WHY" >&2; exit 2; }
netns_rate_bps "$rate" >/dev/null || exit 2
netns_trap
names=(sender)
for ((i = 0; i < streams; i++)); do names+=("receiver$i"); done
netns_cluster_create "${names[@]}"
for ((i = 0; i <= streams; i++)); do netns_link "$i" "$rate"; done
out=$(mktemp -d)
echo "tcp_share: $streams streams of $bytes bytes from one host through $rate links; load average $(cut -d' ' -f1-3 /proc/loadavg)"
netns_exec 0 python3 - "$streams" "$bytes" "$repeats" <<'PY' &
import socket, sys, threading, time
n, size, repeats = map(int, sys.argv[1:])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 5001))
srv.listen(n)
conns = [srv.accept()[0] for _ in range(n)]
for c in conns:
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
data = b"x" * size
for _ in range(repeats + 1):  # the first is a warm-up
    threads = [threading.Thread(target=c.sendall, args=(data,)) for c in conns]
    for t in threads:
        t.start()
    for c in conns:
        c.recv(1)  # the receiver has everything
    for t in threads:
        t.join()
    time.sleep(0.3)  # idle between rounds, as between a broadcast and the next
PY
for ((i = 1; i <= streams; i++)); do
  netns_exec "$i" python3 - "$(netns_ip 0)" "$bytes" "$repeats" >"$out/$i" <<'PY' &
import socket, sys, time
host, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        s = socket.create_connection((host, 5001))
        break
    except OSError:
        time.sleep(0.05)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(repeats + 1):
    got, first = 0, None
    while got < size:
        b = s.recv(1 << 20)
        first = first or time.time()
        got += len(b)
    print(f"{first:.6f} {time.time():.6f}")
    s.sendall(b"k")
PY
done
wait
python3 - "$out" "$streams" "$repeats" <<'PY'
import os, random, sys
out, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = [[tuple(map(float, line.split())) for line in open(os.path.join(out, f))] for f in sorted(os.listdir(out))]
fractions = []
for r in range(1, repeats + 1):
    start = min(x[r][0] for x in runs)
    done = sorted(x[r][1] - start for x in runs)
    fractions.append([d / done[-1] for d in done])
    print("  completion (ms):", " ".join(f"{1e3 * d:7.1f}" for d in done))
def model(u, draws=4000):
    rng, acc = random.Random(1), [0.0] * n
    for _ in range(draws):
        w = [1 + u * (2 * rng.random() - 1) for _ in range(n)]
        left, t, active, done = [1.0] * n, 0.0, set(range(n)), []
        while active:
            total = sum(w[i] for i in active)
            dt = min(left[i] * total / w[i] for i in active)
            for i in list(active):
                left[i] -= w[i] * dt / total
                if left[i] <= 1e-12:
                    active.discard(i)
                    done.append(t + dt)
            t += dt
        for k, d in enumerate(sorted(done)):
            acc[k] += d / t / draws
    return acc
print("mean completion / last, by rank:")
print(f"  measured        {' '.join(f'{sum(f[k] for f in fractions) / len(fractions):.2f}' for k in range(n))}")
for u in (0.0, 0.5, 0.8):
    print(f"  model u = {u:.1f}   {' '.join(f'{x:.2f}' for x in model(u))}")
PY
rm -rf "$out"
