#!/usr/bin/python3
"""Codecs and strategies in wall time: the table of an emulated sweep beside the simulator's
prediction of the same runs.

    bench/wall_time.py EMULATED_SWEEP [SIMULATED_SWEEP] [--target_accuracy 0.7] [--markdown]

EMULATED_SWEEP is a sweep directory of an emulated manifest (experiments/manifests/lan_wall_time.json
run with scripts/sweep.py; root only), SIMULATED_SWEEP (default EMULATED_SWEEP-simulated) the same
manifest run with `scripts/sweep.py --simulate`: the same run names, each simulated with the same
network flags. Per run it prints: the time to the target test accuracy (the first epoch-end
evaluation at or above it; "-" when never reached) emulated and simulated, the mean epoch time of
epochs 2.. both ways and the simulator's error on it, the final accuracy, the bytes moved (server
links up and down plus worker-to-worker frames) and the load average when the emulated run started.
Runs missing on either side are listed as such; nothing is left out silently.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import sweep  # noqa: E402
from report import read_csv, read_json  # noqa: E402  (one reader of run directories)


def metrics(run_dir):
    return read_csv(os.path.join(run_dir, "metrics.csv"))


def time_to(rows, column, target):
    for r in rows:
        try:
            if float(r["test_accuracy"]) >= target and r[column]:
                return float(r[column])
        except ValueError:
            continue
    return None


def mean_epoch(rows, column):
    t = [float(r[column]) for r in rows if r.get(column)]
    d = [b - a for a, b in zip(t, t[1:])][1:]  # epochs 2..: the first includes start-up
    return sum(d) / len(d) if d else None


def moved_bytes(summary):
    peer = (summary.get("peer_bytes_per_worker") or 0) * (summary.get("nodes") or 0)
    return (summary.get("bytes_up") or 0) + (summary.get("bytes_down") or 0) + peer


def row_of(name, params, emulated_dir, simulated_dir, target):
    e_sum, s_sum = read_json(os.path.join(emulated_dir, "summary.json")), read_json(os.path.join(simulated_dir, "summary.json"))
    e_rows, s_rows = metrics(emulated_dir), metrics(simulated_dir)
    run = read_json(os.path.join(emulated_dir, "sweep_run.json")) or {}
    p = params
    e_epoch, s_epoch = mean_epoch(e_rows, "wall_s"), mean_epoch(s_rows, "virtual_s")
    return {
        "name": name,
        "workers": p.get("node_count"),
        "link": p.get("net_bandwidth", ""),
        "job": " ".join(f"{k}={v}" for k, v in sorted(p.items())
                        if k in ("psgd", "codec", "server_codec", "redundancy", "slow_worker")),
        "emulated": (e_sum or {}).get("status", "missing"),
        "simulated": (s_sum or {}).get("status", "missing"),
        "e_target": time_to(e_rows, "wall_s", target),
        "s_target": time_to(s_rows, "virtual_s", target),
        "e_epoch": e_epoch,
        "s_epoch": s_epoch,
        "error": s_epoch / e_epoch - 1 if e_epoch and s_epoch else None,
        "accuracy": (e_sum or {}).get("final_test_accuracy"),
        "mb": moved_bytes(e_sum) / 1e6 if e_sum else None,
        "load": (run.get("load_average") or {}).get("start", [None])[0],
    }


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("emulated")
    ap.add_argument("simulated", nargs="?")
    ap.add_argument("--target_accuracy", type=float, default=0.7)
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for bench/README.md)")
    a = ap.parse_args(argv[1:])
    simulated = a.simulated or a.emulated.rstrip("/") + "-simulated"
    record = read_json(os.path.join(a.emulated, "sweep.json"))
    if record is None:
        print(f"wall_time: {a.emulated} is not a sweep directory (no sweep.json)", file=sys.stderr)
        return 2
    # Every run of the manifest, measured or not (a sweep run with --only records only its own).
    rows = [row_of(r["name"], r["params"], os.path.join(a.emulated, r["name"]), os.path.join(simulated, r["name"]),
                   a.target_accuracy) for r in sweep.expand(record["manifest"])]
    head = ["workers", "link", "job", f"to {a.target_accuracy:.0%}: emulated s", "simulated s",
            "epoch: emulated s", "simulated s", "error", "final acc", "MB moved", "load"]
    lines = []
    for r in rows:
        if r["emulated"] != "completed":
            lines.append([str(r["workers"]), r["link"], r["job"], f"not measured ({r['emulated']})",
                          fmt(r["s_target"], ".1f"), "", fmt(r["s_epoch"], ".2f"), "", "", "", ""])
            continue
        lines.append([str(r["workers"]), r["link"], r["job"], fmt(r["e_target"], ".1f"), fmt(r["s_target"], ".1f"),
                      fmt(r["e_epoch"], ".2f"), fmt(r["s_epoch"], ".2f"),
                      "-" if r["error"] is None else f"{100 * r['error']:+.1f} %",
                      fmt(r["accuracy"], ".4f"), fmt(r["mb"], ".1f"), fmt(r["load"], ".2f")])
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        for line in [head] + lines:
            print("  ".join(x.ljust(w) for x, w in zip(line, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
