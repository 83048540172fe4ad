#!/usr/bin/env python3
"""Measures this machine's loopback TCP link for the simulator: bandwidth and one-way latency.

Bandwidth: a writer sends COUNT messages of SIZE bytes (default: one MLP gradient frame,
814,160 bytes) to a reader in another process, as a psgd worker does; the rate is bytes / time
until the reader has everything. Latency: half the round trip of a 16-byte ping-pong.
Prints two lines for scripts: `bandwidth_bps N` and `latency_s N`.
"""
import multiprocessing as mp
import socket
import sys
import time


def reader(port, total, ready):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = 0
    buf = bytearray(1 << 20)
    while got < total:
        n = conn.recv_into(buf)
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    # ping-pong echo
    while True:
        m = conn.recv(16)
        if not m:
            break
        conn.sendall(m)


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 814160
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ready = mp.Event()
    p = mp.Process(target=reader, args=(port, size * count, ready), daemon=True)
    p.start()
    ready.wait()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"\0" * size
    t0 = time.perf_counter()
    for _ in range(count):
        s.sendall(msg)
    s.recv(1)
    bw = size * count * 8 / (time.perf_counter() - t0)
    rounds = 2000
    t0 = time.perf_counter()
    for _ in range(rounds):
        s.sendall(b"x" * 16)
        got = 0
        while got < 16:
            got += len(s.recv(16 - got))
    lat = (time.perf_counter() - t0) / rounds / 2
    s.close()
    p.join(timeout=2)
    print(f"bandwidth_bps {bw:.0f}")
    print(f"latency_s {lat:.9f}")


if __name__ == "__main__":
    main()
