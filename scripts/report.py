#!/usr/bin/python3
"""Turn a psgd run directory or a sweep directory into report.html and report.md with plots.

    scripts/report.py RUN_OR_SWEEP_DIR [--target_accuracy 0.8] [--title TEXT]

A run directory has summary.json (the run-directory contract in DESIGN.md); a sweep directory
(scripts/sweep.py) holds run directories, sweep.json and a run's sweep_run.json even when it
failed before writing anything else. Every directory below the given one that holds summary.json
or sweep_run.json is a run (.attempts/ is skipped).

Tables: every run (final and best accuracy, time and virtual time to --target_accuracy, bytes,
throughput), scaling over node count (speedup and efficiency of throughput against the smallest
node count of each configuration; the per-worker batch is fixed, so this is weak scaling), each
worker's compute / communication / wait split, failed runs, and provenance (git revision, host,
library versions, command line, seed) of the sweep and of every run.

Plots (PNG files beside the report, written with Debian's python3-matplotlib): accuracy and loss
against epochs, accuracy against wall (and virtual) time, accuracy against bytes on the wire,
throughput and efficiency against node count, and the time split. Without matplotlib only the
tables are written.

(Over 400 lines: one report tool, tables and plots for runs and sweeps.)

Over 400 lines: one self-contained script (reading runs, the tables, the plots, HTML and Markdown)
that a researcher can copy next to their results without the rest of the repository.
"""
import argparse
import csv
import datetime
import html
import json
import os
import platform
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------------------------
# Reading runs


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def num(v):
    try:
        return float(v) if v not in ("", None) else None
    except ValueError:
        return None


def find_runs(root):
    if os.path.exists(os.path.join(root, "summary.json")):
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "logs")
        if dirpath != root and ("summary.json" in filenames or "sweep_run.json" in filenames):
            found.append(dirpath)
            dirnames[:] = []
    return found


# Job settings (config.json's "job", "server", "simulation"; sweep_run.json's params) that do not make
# the job another one: where it writes and listens, how long it waits for others, checkpointing, and
# what it records besides the results. Together with the node count and the seed (the axes a scaling
# curve averages over and runs along), these are left out of a run's configuration (Run.settings).
NOT_THE_JOB = {"output", "working_ports", "port_file", "bind", "join_timeout", "io_timeout", "dead_after",
               "heartbeat_interval", "checkpoint_every", "save_every_epoch", "crash_after_checkpoints",
               "resume", "timeline", "tensorboard", "passphrase_file", "cluster", "network_file", "simulate",
               "check", "config"}
PER_CURVE = {"node_count", "nodes", "seed"}
# Shown by Run.label itself (psgd/codec, r, the block assignment with its non-iid kind).
IN_LABEL = {"psgd", "codec", "redundancy", "block_assignment", "shards_per_node", "dirichlet_alpha"}


def hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


class Run:
    def __init__(self, path, root):
        self.path = path
        self.name = os.path.relpath(path, root) if path != root else os.path.basename(os.path.abspath(path))
        self.summary = read_json(os.path.join(path, "summary.json")) or {}
        self.config = read_json(os.path.join(path, "config.json")) or {}
        self.sweep_run = read_json(os.path.join(path, "sweep_run.json")) or {}
        self.metrics = read_csv(os.path.join(path, "metrics.csv"))
        self.workers = read_csv(os.path.join(path, "workers.csv"))
        params = self.sweep_run.get("params", {})
        job = self.config.get("job", {})

        def pick(key, default=None):
            for src in (self.summary, job, params):
                if src.get(key) is not None:
                    return src[key]
            return default

        self.psgd = pick("psgd", "ssgd")
        self.codec = pick("codec", "plain")
        self.nodes = int(pick("nodes", pick("node_count", 0)) or 0)
        self.redundancy = pick("redundancy", 1)
        self.assignment = pick("block_assignment", "iid")
        if self.assignment == "non-iid":  # which kind (noniid.json compares both); Dirichlet wins
            alpha, shards = num(pick("dirichlet_alpha")), num(pick("shards_per_node"))
            if alpha:
                self.assignment = f"non-iid Dirichlet({alpha:g})"
            elif shards:
                self.assignment = f"non-iid {shards:g} shards/node"
        self.seed = pick("seed", 1)
        self.model = pick("model", "mlp")
        self.batch = pick("batch_size", "")
        self.epochs_planned = job.get("epochs", params.get("epochs"))
        self.status = self.summary.get("status") or self.sweep_run.get("status") or "unknown (no summary.json)"
        self.completed = self.status == "completed"
        self.settings = self.job_settings()
        self.distinct = []  # the settings that tell this run's configuration from others' (distinguish)

    def job_settings(self):
        """{setting: value} of every job setting the run recorded but NOT_THE_JOB and PER_CURVE:
        config.json's job and, when simulated, the simulator's flags (else, for a run that failed
        before writing config.json, sweep_run.json's params); the emulated network and a slow
        worker from sweep_run.json's params and config.json's workers."""
        out = {}
        params = self.sweep_run.get("params", {})
        job = self.config.get("job")
        if isinstance(job, dict):
            out.update(job)
            sim = self.config.get("simulation")
            if isinstance(sim, dict) and isinstance(sim.get("flags"), dict):
                out.update(sim["flags"])
            out["simulated"] = sim is not None
        else:
            out.update(params)
        for key in ("net_bandwidth", "server_bandwidth", "host_bandwidth", "net_latency", "net_mtu", "slow_worker"):
            if key in params and key not in out:
                out[key] = params[key]
        slow = sorted({w.get("slowdown") for w in self.config.get("workers") or []
                       if isinstance(w, dict) and w.get("slowdown") not in (None, 1, 1.0)})
        if slow and "slow_worker" not in out:
            out["slow_worker"] = ",".join(f"{v:g}" for v in slow)
        if out.get("stragglers") and self.nodes:  # sweep.py --simulate's slow_worker: the last worker
            out["stragglers"] = ",".join(("last" + x[len(str(self.nodes - 1)):]) if x.startswith(f"{self.nodes - 1}:")
                                         else x for x in str(out["stragglers"]).split(","))
        out.update(psgd=self.psgd, codec=self.codec, redundancy=self.redundancy, block_assignment=self.assignment)
        return {k: hashable(v) for k, v in out.items()
                if k not in NOT_THE_JOB and k not in PER_CURVE and k not in ("shards_per_node", "dirichlet_alpha")}

    def group(self):
        """Every job setting but the node count and seed (and NOT_THE_JOB): the runs of one scaling
        curve, whose seeds are averaged."""
        return tuple(sorted(self.settings.items(), key=lambda kv: kv[0]))

    def label(self, with_nodes=True):
        s = f"{self.psgd}/{self.codec}"
        if self.redundancy not in (1, "1"):
            s += f" r{self.redundancy}"
        if self.assignment != "iid":
            s += f" {self.assignment}"
        for key in self.distinct:
            value = self.settings.get(key)
            s += f" {key}={'–' if value is None else value}"
        if with_nodes:
            s += f" n{self.nodes}"
        return s


    def series(self, column):
        return [num(r.get(column)) for r in self.metrics]

    def time_to(self, target, column):
        for r in self.metrics:
            acc, t = num(r.get("test_accuracy")), num(r.get(column))
            if acc is not None and t is not None and acc >= target:
                return t
        return None

    def worker_totals(self):
        totals = {}
        for r in self.workers:
            t = totals.setdefault(int(r["worker"]), {"host": r.get("host", ""), "iterations": 0})
            t["iterations"] += int(num(r.get("iterations")) or 0)
            for k in ("compute_s", "encode_s", "wait_s", "transfer_s", "decode_s", "apply_s", "held_s"):
                t[k] = t.get(k, 0.0) + (num(r.get(k)) or 0.0)
        return dict(sorted(totals.items()))


def distinguish(runs):
    """Sets each run's `distinct`: the settings (beyond Run.label's own) whose values differ between
    the runs' configurations, so that every configuration has a label of its own."""
    keys = sorted({k for r in runs for k in r.settings} - IN_LABEL)
    differ = [k for k in keys if len({repr(r.settings.get(k)) for r in runs}) > 1]
    for r in runs:
        r.distinct = differ


def split_of(t):
    """compute / communication (encode, decode, transfer) / wait (held by the server) seconds."""
    comm = t.get("encode_s", 0) + t.get("decode_s", 0) + t.get("transfer_s", 0)
    return t.get("compute_s", 0), comm, t.get("held_s", 0)


# ----------------------------------------------------------------------------------------------
# Tables: (title, note, headers, rows) rendered to Markdown and HTML


def fmt(v, spec=".2f", unit=""):
    if v is None:
        return "–"
    return f"{v:{spec}}{unit}"


def pct(v):
    return fmt(None if v is None else 100 * v, ".2f", " %")


def mb(v):
    return fmt(None if v is None else v / 1e6, ",.1f")


def is_regression(summary):
    """--target regression: RMSE and R² stand where accuracy does."""
    return summary.get("final_test_rmse") is not None


def runs_table(runs, target):
    rows = []
    regression = any(is_regression(r.summary) for r in runs)
    for r in runs:
        s = r.summary
        scores = ([fmt(s.get("final_test_rmse"), ".4g"), fmt(s.get("best_test_rmse"), ".4g"),
                   fmt(s.get("final_test_r2"), ".4f")] if regression else
                  [pct(s.get("final_test_accuracy")), pct(s.get("best_test_accuracy"))])
        rows.append([r.name, r.psgd, r.codec, r.nodes, r.redundancy, r.assignment, r.seed, r.status,
                     *scores,
                     s.get("epochs", "–"), fmt(s.get("wall_seconds")), fmt(s.get("virtual_seconds")),
                     fmt(r.time_to(target, "wall_s")), fmt(r.time_to(target, "virtual_s")),
                     mb(s.get("bytes_up")), mb(s.get("bytes_down")),
                     fmt(s.get("samples_per_second"), ",.0f")])
    return ("Runs", f"Time to target: wall (and virtual) seconds at the first evaluation with test accuracy ≥ "
            f"{100 * target:.0f} %; – when never reached.",
            ["run", "psgd", "codec", "nodes", "r", "blocks", "seed", "status",
             *(["final RMSE", "best RMSE", "final R²"] if regression else ["final acc", "best acc"]), "epochs",
             "wall s", "virtual s", f"wall s to {100 * target:.0f}%", f"virtual s to {100 * target:.0f}%",
             "MB up", "MB down", "samples/s"], rows)


def scaling_data(runs, target):
    """{group: [(nodes, mean samples/s, speedup, efficiency, mean wall s, mean time to target)]}"""
    groups = {}
    for r in runs:
        if r.completed and r.nodes > 0:
            groups.setdefault(r.group(), {}).setdefault(r.nodes, []).append(r)
    out = {}
    for g, by_nodes in groups.items():
        if len(by_nodes) < 2:
            continue

        def mean(vals):
            vals = [v for v in vals if v is not None]
            return sum(vals) / len(vals) if vals else None

        points = []
        base_n = min(by_nodes)
        base = mean(x.summary.get("samples_per_second") for x in by_nodes[base_n])
        for n in sorted(by_nodes):
            rs = by_nodes[n]
            thr = mean(x.summary.get("samples_per_second") for x in rs)
            speedup = thr / base if thr and base else None
            eff = speedup / (n / base_n) if speedup else None
            points.append({"nodes": n, "throughput": thr, "speedup": speedup, "efficiency": eff,
                           "wall": mean(x.summary.get("wall_seconds") for x in rs),
                           "ttt": mean(x.time_to(target, "wall_s") for x in rs),
                           "acc": mean(x.summary.get("final_test_accuracy") for x in rs),
                           "seeds": len(rs), "label": rs[0].label(with_nodes=False)})
        out[g] = points
    return out


def scaling_table(scaling, target):
    rows = []
    for points in scaling.values():
        for p in points:
            rows.append([p["label"], p["nodes"], p["seeds"], fmt(p["throughput"], ",.0f"), fmt(p["speedup"]),
                         fmt(None if p["efficiency"] is None else 100 * p["efficiency"], ".0f", " %"),
                         fmt(p["wall"]), fmt(p["ttt"]), pct(p["acc"])])
    return ("Scaling over node count",
            "Speedup: training throughput (samples/s) relative to the smallest node count of the same "
            "configuration; efficiency: speedup ÷ (nodes ÷ that node count). The batch per worker is fixed, "
            "so the global batch grows with the nodes (weak scaling); means over seeds.",
            ["configuration", "nodes", "seeds", "samples/s", "speedup", "efficiency", "wall s",
             f"wall s to {100 * target:.0f}%", "final acc"], rows)


def split_table(runs):
    rows = []
    for r in runs:
        for w, t in r.worker_totals().items():
            c, comm, wait = split_of(t)
            total = c + comm + wait
            share = (lambda v: fmt(100 * v / total, ".0f", " %")) if total > 0 else (lambda v: "–")
            rows.append([r.name, w, t["host"], t["iterations"], fmt(c), fmt(comm), fmt(wait),
                         share(c), share(comm), share(wait), fmt(t.get("encode_s")), fmt(t.get("decode_s")),
                         fmt(t.get("transfer_s"))])
    return ("Where the workers' time went",
            "Per worker over all epochs. compute: forward and backward; communication: encode + decode + "
            "transfer (network and framing, wait − held); wait: the server held the gradient (waiting for the "
            "other workers, averaging, its optimiser step).",
            ["run", "worker", "host", "iterations", "compute s", "comm s", "wait s", "compute", "comm", "wait",
             "encode s", "decode s", "transfer s"], rows)


def failed_table(runs):
    rows = [[r.name, r.psgd, r.codec, r.nodes, r.status] for r in runs if not r.completed]
    return ("Failed or diverged runs",
            "Runs that did not complete, with the reason their run directory or the sweep recorded "
            "(diverged: a loss became NaN or infinite and init_server stopped the run; the status says where).",
            ["run", "psgd", "codec", "nodes", "status"], rows)


def per_epoch_table(run):
    rows = []
    regression = is_regression(run.summary)
    for m in run.metrics:
        scores = ([fmt(num(m.get("test_rmse")), ".4g"), fmt(num(m.get("test_r2")), ".4f")] if regression
                  else [pct(num(m.get("test_accuracy")))])
        rows.append([m.get("epoch"), m.get("iteration"), fmt(num(m.get("wall_s"))), fmt(num(m.get("virtual_s"))),
                     fmt(num(m.get("train_loss")), ".4f"), fmt(num(m.get("test_loss")), ".4f"),
                     *scores, mb(num(m.get("bytes_up"))), mb(num(m.get("bytes_down")))])
    return ("Per epoch", "Epoch 0 is the initial model.",
            ["epoch", "iteration", "wall s", "virtual s", "train loss", "test loss",
             *(["test RMSE", "test R²"] if regression else ["test acc"]), "MB up", "MB down"],
            rows)


def provenance_tables(runs, sweep):
    tables = []
    if sweep:
        p = sweep.get("provenance", {})
        libs = ", ".join(f"{k} {v}" for k, v in p.get("libraries", {}).items())
        rows = [["sweep", sweep.get("name", "")], ["description", sweep.get("description", "")],
                ["manifest", sweep.get("manifest_path", "")], ["git revision", p.get("psgd_revision", "")],
                ["host", f"{p.get('host', '')} ({p.get('platform', '')}, {p.get('cores', '?')} cores)"],
                ["libraries", libs], ["command line", f"`{p.get('command_line', '')}`"],
                ["seeds", ", ".join(str(s) for s in sweep.get("seeds", []))],
                ["started / finished (UTC)", f"{p.get('started_utc', '')} / {p.get('finished_utc', '–')}"]]
        tables.append(("Sweep provenance", "", ["", ""], rows))
    rows = []
    for r in runs:
        p = r.config.get("provenance", {})
        libs = p.get("libraries", {})
        lib = ", ".join(f"{k} {libs[k]}" for k in ("torch", "asio", "cereal", "fmt") if k in libs)
        rows.append([r.name, p.get("psgd_revision", "–"), p.get("host", "–"), lib or "–", libs.get("blas", "–"),
                     r.config.get("seed", r.seed), f"`{p.get('command_line', ' '.join(r.sweep_run.get('command', [])))}`"])
    tables.append(("Run provenance", "From each run's config.json (git revision of the binary, host, versions, "
                   "the exact command line and seed).",
                   ["run", "git revision", "host", "libraries", "BLAS", "seed", "command line"], rows))
    return tables


# ----------------------------------------------------------------------------------------------
# Plots


def plots(out_dir, runs, scaling, target):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker  # noqa: F401
    except ImportError:
        print("report: matplotlib not available (apt-get install python3-matplotlib); tables only",
              file=sys.stderr)
        return []
    done = [r for r in runs if r.completed and r.metrics]
    made = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    style = {r.name: dict(color=colors[i % len(colors)], marker="os^Dv<>p*h"[(i // len(colors)) % 10])
             for i, r in enumerate(done)}
    many = len(done) > 6

    def finish(fig, axes, name, title):
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            if many:
                fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
                fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) + 3) // 4), 1, 0.95))
            else:
                axes[-1].legend(fontsize=8)
                fig.tight_layout(rect=(0, 0, 1, 0.95))
        else:
            fig.tight_layout(rect=(0, 0, 1, 0.95))
        fig.suptitle(title)
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        made.append((name, title))

    def label(r):
        return r.name if len(done) <= 1 else f"{r.label()} s{r.seed}"

    if done:
        # Accuracy and loss against epochs.
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6 + (0.6 if many else 0)))
        for r in done:
            ep = [int(m["epoch"]) for m in r.metrics]
            axes[0].plot(ep, [100 * v for v in r.series("test_accuracy")], label=label(r), **style[r.name])
            axes[1].plot(ep, r.series("test_loss"), label=label(r), **style[r.name])
            tl = [(e, v) for e, v in zip(ep, r.series("train_loss")) if v is not None]
            if tl:
                axes[1].plot([e for e, _ in tl], [v for _, v in tl], linestyle="--", color=style[r.name]["color"],
                             alpha=0.7)
        axes[0].axhline(100 * target, color="grey", linestyle=":", linewidth=1)
        axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
        axes[1].set(xlabel="epoch", ylabel="cross-entropy loss", title="loss (solid: test, dashed: train)")
        for a in axes:
            a.grid(alpha=0.3)
            a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        finish(fig, axes, "accuracy_loss_epochs.png", "Accuracy and loss against epochs")

        # Accuracy against wall time (and virtual time when simulated).
        virtual = [r for r in done if any(v is not None for v in r.series("virtual_s"))]
        fig, axes = plt.subplots(1, 2 if virtual else 1, figsize=(12 if virtual else 7.5, 4.6 + (0.6 if many else 0)),
                                 squeeze=False)
        axes = list(axes[0])
        for r in done:
            axes[0].plot(r.series("wall_s"), [100 * v for v in r.series("test_accuracy")], label=label(r),
                         **style[r.name])
        axes[0].set(xlabel="wall time since training started (s)", ylabel="test accuracy (%)", title="wall time")
        if virtual:
            for r in virtual:
                axes[1].plot(r.series("virtual_s"), [100 * v for v in r.series("test_accuracy")], label=label(r),
                             **style[r.name])
            axes[1].set(xlabel="virtual time (s)", ylabel="test accuracy (%)", title="virtual time (simulated)")
        for a in axes:
            a.axhline(100 * target, color="grey", linestyle=":", linewidth=1)
            a.grid(alpha=0.3)
        finish(fig, axes, "accuracy_time.png", "Accuracy against time")

        # Accuracy against bytes on the wire.
        fig, axes = plt.subplots(1, 1, figsize=(7.5, 4.6 + (0.6 if many else 0)), squeeze=False)
        axes = list(axes[0])
        for r in done:
            up, down = r.series("bytes_up"), r.series("bytes_down")
            total = [((u or 0) + (d or 0)) / 1e6 for u, d in zip(up, down)]
            axes[0].plot(total[1:], [100 * v for v in r.series("test_accuracy")][1:], label=label(r), **style[r.name])
        axes[0].set(xlabel="bytes on the wire, up + down (MB, cumulative)", ylabel="test accuracy (%)")
        totals = [(r.summary.get("bytes_up") or 0) + (r.summary.get("bytes_down") or 0) for r in done]
        if min(totals) > 0 and max(totals) / min(totals) > 20:  # codecs differ by orders of magnitude
            axes[0].set_xscale("log")
            axes[0].get_xaxis().set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.6g}"))
        axes[0].grid(alpha=0.3, which="both")
        finish(fig, axes, "accuracy_bytes.png", "Accuracy against communication")

        # Time split per run (mean per worker).
        fig, ax = plt.subplots(figsize=(9, 1.6 + 0.45 * len(done)))
        names, parts = [], []
        for r in done:
            totals = list(r.worker_totals().values())
            if not totals:
                continue
            s = [sum(split_of(t)[i] for t in totals) / len(totals) for i in range(3)]
            names.append(label(r))
            parts.append(s)
        if parts:
            left = [0.0] * len(parts)
            for i, (what, color) in enumerate(zip(["compute", "communication", "wait (held by server)"],
                                                  ["tab:blue", "tab:orange", "tab:grey"])):
                vals = [p[i] for p in parts]
                ax.barh(names, vals, left=left, color=color, label=what)
                left = [a + b for a, b in zip(left, vals)]
            ax.set_xlabel("seconds per worker (mean over workers, all epochs)")
            ax.invert_yaxis()
            ax.grid(alpha=0.3, axis="x")
            ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
            fig.suptitle("Where the workers' time went")
            fig.tight_layout(rect=(0, 0, 1, 0.97))
            fig.savefig(os.path.join(out_dir, "time_split.png"), dpi=110)
            made.append(("time_split.png", "Where the workers' time went"))
        plt.close(fig)

    if scaling:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        max_n = 1
        for i, points in enumerate(scaling.values()):
            ns = [p["nodes"] for p in points]
            max_n = max(max_n, max(ns))
            c = colors[i % len(colors)]
            axes[0].plot(ns, [p["throughput"] for p in points], marker="o", color=c, label=points[0]["label"])
            axes[1].plot(ns, [100 * (p["efficiency"] or 0) for p in points], marker="o", color=c,
                         label=points[0]["label"])
            base = points[0]
            axes[0].plot(ns, [base["throughput"] * n / base["nodes"] for n in ns], linestyle=":", color=c, alpha=0.6,
                         label=f"{points[0]['label']} ideal")
        axes[0].set(xlabel="nodes (workers)", ylabel="training throughput (samples/s)", title="throughput")
        axes[1].axhline(100, color="grey", linestyle=":", linewidth=1)
        axes[1].set(xlabel="nodes (workers)", ylabel="scaling efficiency (%)", title="efficiency", ylim=(0, 110))
        for a in axes:
            a.set_xscale("log", base=2)
            a.set_xticks(sorted({p["nodes"] for pts in scaling.values() for p in pts}))
            a.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        fig.suptitle("Scaling over node count")
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        fig.savefig(os.path.join(out_dir, "scaling.png"), dpi=110)
        plt.close(fig)
        made.append(("scaling.png", "Scaling over node count"))
    return made


# ----------------------------------------------------------------------------------------------
# Rendering


def md_table(t):
    title, note, headers, rows = t
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    if not rows:
        return lines + ["(none)", ""]
    lines.append("| " + " | ".join(str(h) for h in headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return lines + [""]


def html_cell(c):
    s = str(c)
    if s.startswith("`") and s.endswith("`") and len(s) > 1:
        return f"<code>{html.escape(s[1:-1])}</code>"
    return html.escape(s)


def html_table(t):
    title, note, headers, rows = t
    out = [f"<h2>{html.escape(title)}</h2>"]
    if note:
        out.append(f"<p class='note'>{html.escape(note)}</p>")
    if not rows:
        return out + ["<p>(none)</p>"]
    out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr></thead><tbody>")
    for r in rows:
        cls = " class='failed'" if any(str(c).startswith("failed") for c in r) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html_cell(c)}</td>" for c in r) + "</tr>")
    return out + ["</tbody></table>"]


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.failed td { background: #fdecea; } code { font-size: 0.85em; word-break: break-all; }
p.note { color: #555; font-size: 0.9em; max-width: 1000px; } img { max-width: 100%; border: 1px solid #eee; }
"""


def report_provenance():
    rev = "unknown"
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=HERE, capture_output=True,
                             text=True, timeout=10).stdout.strip() or rev
    except (OSError, subprocess.SubprocessError):
        pass
    return (f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} on {socket.gethostname()} "
            f"by scripts/report.py (psgd {rev}, Python {platform.python_version()}).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="a run directory or a sweep directory")
    ap.add_argument("--target_accuracy", type=float, default=0.8,
                    help="test accuracy for the time-to-target columns (fraction, default 0.8)")
    ap.add_argument("--title", help="report title")
    args = ap.parse_args(argv)
    root = args.dir.rstrip("/") or "/"
    if not os.path.isdir(root):
        print(f"report: {root}: no such directory", file=sys.stderr)
        return 1
    if not 0 < args.target_accuracy <= 1:
        print("report: --target_accuracy is a fraction in (0, 1]", file=sys.stderr)
        return 2
    runs = [Run(p, root) for p in find_runs(root)]
    if not runs:
        print(f"report: {root} holds no psgd run directory (summary.json) or sweep runs", file=sys.stderr)
        return 1
    runs.sort(key=lambda r: (r.psgd, r.codec, str(r.redundancy), r.assignment, r.nodes, str(r.seed), r.name))
    distinguish([r for r in runs if r.completed])  # the runs that plots and scaling curves show
    sweep = read_json(os.path.join(root, "sweep.json"))
    single = len(runs) == 1 and runs[0].path == root
    target = args.target_accuracy
    scaling = scaling_data(runs, target)

    tables = [runs_table(runs, target)]
    if scaling:
        tables.append(scaling_table(scaling, target))
    if single:
        tables.append(per_epoch_table(runs[0]))
    tables.append(split_table(runs))
    if any(not r.completed for r in runs):
        tables.append(failed_table(runs))
    images = plots(root, runs, scaling, target)
    tables += provenance_tables(runs, sweep)

    done = sum(r.completed for r in runs)
    if args.title:
        title = args.title
    elif single:
        r = runs[0]
        title = f"psgd run: {r.psgd} / {r.codec} / {r.nodes} workers"
    else:
        title = f"psgd sweep: {sweep.get('name') if sweep else os.path.basename(os.path.abspath(root))}"
    intro = f"{len(runs)} run(s), {done} completed, {len(runs) - done} not. Target accuracy {100 * target:.0f} %."
    if sweep and sweep.get("description"):
        intro = sweep["description"] + " " + intro
    generated = report_provenance()

    # Order: the run and scaling tables, the plots, then the rest.
    head, rest = tables[:2] if scaling or single else tables[:1], tables[2:] if scaling or single else tables[1:]
    md = [f"# {title}", "", intro, ""]
    for t in head:
        md += md_table(t)
    if images:
        md += ["## Plots", ""]
        for name, caption in images:
            md += [f"![{caption}]({name})", ""]
    for t in rest:
        md += md_table(t)
    md += ["", f"_{generated}_", ""]
    with open(os.path.join(root, "report.md"), "w") as f:
        f.write("\n".join(md))

    h = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for t in head:
        h += html_table(t)
    if images:
        h.append("<h2>Plots</h2>")
        for name, caption in images:
            h.append(f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for t in rest:
        h += html_table(t)
    h += [f"<p class='note'>{html.escape(generated)}</p>", "</body></html>"]
    with open(os.path.join(root, "report.html"), "w") as f:
        f.write("\n".join(h) + "\n")
    print(os.path.join(root, "report.html"))  # report.md and the PNGs are beside it
    return 0


if __name__ == "__main__":
    sys.exit(main())
