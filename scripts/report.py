#!/usr/bin/python3
"""Turn one psgd run directory into report.md and plots (accuracy.png, loss.png).

    scripts/report.py RUN_DIR

Reads config.json, summary.json, metrics.csv and workers.csv (the run-directory contract in
DESIGN.md). Plots use Debian's python3-matplotlib; without it only report.md is written.
"""
import csv
import json
import os
import sys


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else None


def plot(run, metrics):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    epochs = [int(r["epoch"]) for r in metrics]
    # Simulated runs leave wall_s empty (metrics.csv is then repeatable); their time is virtual_s.
    wall = [num(r["wall_s"]) if num(r["wall_s"]) is not None else num(r.get("virtual_s", "")) or 0.0
            for r in metrics]
    acc = [100 * float(r["test_accuracy"]) for r in metrics]
    test_loss = [float(r["test_loss"]) for r in metrics]
    train = [(int(r["epoch"]), num(r["train_loss"])) for r in metrics if num(r["train_loss"]) is not None]
    made = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(epochs, acc, marker="o")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].grid(alpha=0.3)
    axes[1].plot(wall, acc, marker="o")
    axes[1].set_xlabel("wall time (s)")
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(run, "accuracy.png"), dpi=100)
    plt.close(fig)
    made.append("accuracy.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(epochs, test_loss, marker="o", label="test")
    if train:
        ax.plot([e for e, _ in train], [l for _, l in train], marker="s", label="train (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(run, "loss.png"), dpi=100)
    plt.close(fig)
    made.append("loss.png")
    return made


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    run = sys.argv[1]
    try:
        summary = json.load(open(os.path.join(run, "summary.json")))
        config = json.load(open(os.path.join(run, "config.json")))
        metrics = read_csv(os.path.join(run, "metrics.csv"))
        workers = read_csv(os.path.join(run, "workers.csv"))
    except (OSError, ValueError) as e:
        print(f"report: {run} is not a complete psgd run directory: {e}", file=sys.stderr)
        return 1
    images = plot(run, metrics)
    job = config.get("job", {})
    prov = config.get("provenance", {})
    lines = [
        f"# psgd run: {summary['psgd']} / {summary['codec']} / {summary['nodes']} workers",
        "",
        f"Status: **{summary['status']}**",
        "",
        "| | |",
        "|---|---|",
        f"| final test accuracy | {100 * (summary['final_test_accuracy'] or 0):.2f} % |",
        f"| best test accuracy | {100 * (summary['best_test_accuracy'] or 0):.2f} % |",
        f"| epochs / iterations | {summary['epochs']} / {summary['iterations']} |",
        f"| wall time (training) | {summary['wall_seconds']:.2f} s |",
        f"| throughput | {summary['samples_per_second']:,.0f} samples/s |",
        f"| bytes up / down | {summary['bytes_up'] / 1e6:,.1f} MB / {summary['bytes_down'] / 1e6:,.1f} MB |",
        f"| model | {summary['model']} ({summary['parameters']:,} parameters) |",
        f"| data | {summary['dataset']}, {job.get('block_assignment', '?')}, redundancy {summary['redundancy']} |",
        f"| batch per worker / learning rate | {summary['batch_size']} / {summary['learn_rate']} |",
        f"| seed | {summary['seed']} |",
        f"| built from | psgd {prov.get('psgd_revision', '?')}, torch {prov.get('libraries', {}).get('torch', '?')} |",
        f"| command | `{prov.get('command_line', '?')}` |",
        "",
        "## Per epoch",
        "",
        "| epoch | iteration | wall s | train loss | test loss | test accuracy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in metrics:
        tl = num(r["train_loss"])
        lines.append(
            f"| {r['epoch']} | {r['iteration']} | {num(r['wall_s']) or num(r.get('virtual_s', '')) or 0.0:.2f} | "
            f"{'' if tl is None else f'{tl:.4f}'} | {float(r['test_loss']):.4f} | "
            f"{100 * float(r['test_accuracy']):.2f} % |"
        )
    lines += [
        "",
        "## Where the workers' time went (all epochs)",
        "",
        "| worker | host | compute s | encode s | wait s | of which transfer s | decode s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    totals = {}
    for r in workers:
        t = totals.setdefault(r["worker"], {"host": r["host"], "compute_s": 0, "encode_s": 0, "wait_s": 0, "transfer_s": 0, "decode_s": 0})
        for k in ("compute_s", "encode_s", "wait_s", "transfer_s", "decode_s"):
            t[k] += float(r[k])
    for w, t in sorted(totals.items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {w} | {t['host']} | {t['compute_s']:.2f} | {t['encode_s']:.2f} | {t['wait_s']:.2f} | "
            f"{t['transfer_s']:.2f} | {t['decode_s']:.2f} |"
        )
    if images:
        lines += ["", "## Plots", ""] + [f"![{i}]({i})" for i in images]
    with open(os.path.join(run, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(os.path.join(run, "report.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
