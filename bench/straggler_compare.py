#!/usr/bin/env python3
"""The strategies under a slow worker (issue 4's check), repeated over seeds, in one run.

    bench/straggler_compare.py [--repeats 5] [--epochs 2] [--slowdown 4] [--noniid]

Runs 4 workers, the MLP on Fashion-MNIST, with the last client started with --slowdown F (a
machine F times slower: scripts/run_local.sh --slow_worker F), once per strategy and seed:
  ssgd       --psgd ssgd (the yardstick: every other row is also shown as a ratio to it)
  asgd       --psgd asgd
  ssp2       --psgd ssp --staleness 2
  local4     --psgd local_sgd --sync_period 4
  local4_noniid, ssgd_noniid (with --noniid): the same on a Dirichlet(0.1) label-skewed split
  --add NAME='FLAGS' adds a row with any init_server flags (e.g. --add "asgd_slr=--psgd asgd
  --staleness_lr"); --configs picks and orders the rows.
Repeat r uses seed --seed + r for every strategy, and the strategies of one repeat run one after
the other (interleaved), so that drift in the machine's load hits them alike. It prints, per row,
the training time (summary.json wall_seconds: first step to the end of the last epoch's
evaluation; start-up and data loading excluded) as median [min, max], its ratio to ssgd (ratio
of the medians, and the median of the per-seed ratios), the final test accuracy as median [min,
max] and how many runs reached --target (of the model the run evaluates: the average with
--model_average, and beside it the last iterate's), then where the gradients came from: the slow worker's
share of them, its mean staleness against the fast workers', and the fast workers' time held at
the server per epoch.

Only the Python standard library is needed.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NONIID = ["--block_assignment", "non-iid", "--dirichlet_alpha", "0.1"]
BUILTIN = {
    "ssgd": ["--psgd", "ssgd"],
    "asgd": ["--psgd", "asgd"],
    "ssp2": ["--psgd", "ssp", "--staleness", "2"],
    "local4": ["--psgd", "local_sgd", "--sync_period", "4"],
    "ssgd_noniid": ["--psgd", "ssgd", *NONIID],
    "local4_noniid": ["--psgd", "local_sgd", "--sync_period", "4", *NONIID],
}
DEFAULT = "ssgd,asgd,ssp2,local4"


class RunFailed(Exception):
    pass


def run_one(args, flags, seed, run_dir):
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_local.sh"), "--node_count", str(args.node_count),
           "--epochs", str(args.epochs), "--seed", str(seed), "--output", run_dir, *flags]
    if args.train_samples:
        cmd += ["--train_samples", str(args.train_samples)]
    if args.test_samples:
        cmd += ["--test_samples", str(args.test_samples)]
    cmd += args.flag
    if args.slowdown > 1:
        cmd += ["--slow_worker", str(args.slowdown)]
    env = dict(os.environ, BUILD_DIR=args.build_dir)
    log = run_dir + ".log"
    with open(log, "w") as out:
        try:
            p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=args.timeout,
                               env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"timed out after {args.timeout} s (log {log})")
    summary = os.path.join(run_dir, "summary.json")
    if p.returncode != 0 or not os.path.exists(summary):
        with open(log) as f:
            tail = f.read()[-400:].strip()
        raise RunFailed(f"exit {p.returncode} (log {log}): {tail.splitlines()[-1] if tail else ''}")
    with open(summary) as f:
        s = json.load(f)
    if s.get("status") != "completed":
        raise RunFailed(f"status {s.get('status')} ({run_dir})")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    slow = {w["worker"] for w in config.get("workers", []) if w.get("slowdown", 1.0) > 1.0}
    workers = s.get("workers", [])
    total = sum(w["contributions"] for w in workers) or 1

    def mean_of(rows, field):
        n = sum(w["contributions"] for w in rows)
        return sum(w[field] * w["contributions"] for w in rows) / n if n else 0.0

    fast = [w for w in workers if w["worker"] not in slow]
    slow_rows = [w for w in workers if w["worker"] in slow]

    def per_step(rows):  # compute seconds per gradient or local step
        steps = sum(max(w["contributions"], w.get("local_steps", 0)) for w in rows)
        return sum(w["compute_s"] for w in rows) / steps if steps else 0.0

    return {
        "seed": seed,
        "wall_s": s["wall_seconds"],
        "eval_s": s.get("eval_seconds", 0.0),
        "accuracy": s["final_test_accuracy"],
        # --model_average: the accuracy above is the averaged model's; this, the last iterate's
        "iterate_accuracy": s.get("final_iterate_test_accuracy", s["final_test_accuracy"]),
        "evaluated_model": s.get("evaluated_model", "last iterate"),
        "best_accuracy": s["best_test_accuracy"],
        "iterations": s["iterations"],
        "staleness_mean": s.get("staleness_mean", 0.0),
        "slow_share": sum(w["contributions"] for w in slow_rows) / total,
        "slow_staleness": mean_of(slow_rows, "staleness_mean"),
        "fast_staleness": mean_of(fast, "staleness_mean"),
        "compute_ratio": per_step(slow_rows) / per_step(fast) if per_step(fast) else 0.0,
        "fast_held_per_epoch": statistics.mean(w["held_s"] for w in fast) / max(1, s["epochs"])
        if fast else 0.0,
        "run_dir": run_dir,
    }


def spread(values, fmt):
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--repeats", type=int, default=3, help="seeds per strategy (default 3)")
    p.add_argument("--seed", type=int, default=1, help="seed of the first repeat; repeat r uses seed + r (default 1)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every run (default 2)")
    p.add_argument("--node_count", type=int, default=4, help="workers (default 4)")
    p.add_argument("--slowdown", type=float, default=4.0,
                   help="the last worker's --slowdown (default 4; 1 = no slow worker)")
    p.add_argument("--configs", default="",
                   help=f"rows to run, comma-separated, in this order (default {DEFAULT}, "
                        f"plus local4_noniid,ssgd_noniid with --noniid, plus every --add); "
                        f"built in: {','.join(BUILTIN)}")
    p.add_argument("--noniid", action="store_true",
                   help="also run local4_noniid and ssgd_noniid (--block_assignment non-iid --dirichlet_alpha 0.1)")
    p.add_argument("--add", action="append", default=[], metavar="NAME=FLAGS",
                   help="an extra row: NAME and the init_server flags for it, repeatable "
                        "(e.g. --add 'asgd_slr=--psgd asgd --staleness_lr')")
    p.add_argument("--flag", action="append", default=[],
                   help="extra init_server flag for every run, repeatable (e.g. --flag=--timeline)")
    p.add_argument("--target", type=float, default=0.82, help="accuracy every run should reach (default 0.82)")
    p.add_argument("--build_dir", default=os.environ.get("BUILD_DIR") or os.path.join(ROOT, "build"),
                   help="psgd's build directory (default $BUILD_DIR or build/)")
    p.add_argument("--keep", default="", help="keep the run directories and logs here (default: a temporary directory, removed)")
    p.add_argument("--json", default="", help="also write every measurement to this JSON file")
    p.add_argument("--train_samples", type=int, default=0, help="first N training samples only (0: all; for quick checks)")
    p.add_argument("--test_samples", type=int, default=0, help="first N test samples only (0: all)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per run before it counts as failed (600)")
    args = p.parse_args()

    if args.repeats < 1 or args.epochs < 1 or args.node_count < 2:
        p.error("--repeats and --epochs must be >= 1, --node_count >= 2")
    if args.slowdown < 1:
        p.error("--slowdown must be >= 1")
    configs = dict(BUILTIN)
    added = []
    for item in args.add:
        name, eq, flags = item.partition("=")
        if not eq or not name or not flags.strip() or "," in name:
            p.error(f"--add: expected NAME=FLAGS, got '{item}'")
        configs[name] = shlex.split(flags)
        added.append(name)
    if args.configs:
        order = [c for c in args.configs.split(",") if c]
    else:
        order = DEFAULT.split(",") + (["local4_noniid", "ssgd_noniid"] if args.noniid else []) + added
    unknown = [c for c in order if c not in configs]
    if unknown or not order:
        p.error(f"--configs: unknown {unknown}; expected some of {','.join(configs)}")
    missing = [b for b in ("init_server", "client")
               if not os.access(os.path.join(args.build_dir, "experiments", b), os.X_OK)]
    if missing:
        sys.exit(f"straggler_compare: {args.build_dir}/experiments/{missing[0]} not built; run scripts/build.sh first")

    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="psgd-straggler-")
    os.makedirs(work, exist_ok=True)
    results = {c: [] for c in order}
    failures = []
    start = time.time()
    loads = [os.getloadavg()[0]]
    try:
        for r in range(args.repeats):
            seed = args.seed + r
            for c in order:
                tag = f"{c}-s{seed}"
                try:
                    m = run_one(args, configs[c], seed, os.path.join(work, tag))
                except RunFailed as e:
                    failures.append(f"{tag}: {e}")
                    print(f"[{time.time() - start:6.0f} s] {tag}: FAILED: {e}", flush=True)
                    continue
                loads.append(os.getloadavg()[0])
                results[c].append(m)
                print(f"[{time.time() - start:6.0f} s] {tag}: {m['wall_s']:6.2f} s, accuracy "
                      f"{m['accuracy']:.4f}, staleness slow {m['slow_staleness']:.1f} fast "
                      f"{m['fast_staleness']:.1f}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    base = {m["seed"]: m["wall_s"] for m in results.get("ssgd", [])}
    base_median = statistics.median(base.values()) if base else None
    cores = len(os.sched_getaffinity(0))
    print(f"\n{args.node_count} workers, MLP, Fashion-MNIST, {args.epochs} epoch(s), "
          + (f"one worker --slowdown {args.slowdown:g}" if args.slowdown > 1 else "no slow worker")
          + f"; seeds {args.seed}..{args.seed + args.repeats - 1}; {cores} cores, load average "
          f"{min(loads):.1f}-{max(loads):.1f} during the runs"
          + (f"; extra flags {' '.join(args.flag)}" if args.flag else ""))
    header = (f"{'strategy':<16}{'runs':>5}  {'wall s: median [min, max]':<27}{'vs ssgd':>8}{'paired':>8}  "
              f"{'accuracy: median [min, max]':<30}{'>=' + format(args.target, 'g'):>7}"
              f"  {'last iterate: median, >=':<24}")
    print(header)
    print("-" * len(header))
    for c in order:
        runs = results[c]
        if not runs:
            print(f"{c:<16}{0:>5}  failed")
            continue
        walls = [m["wall_s"] for m in runs]
        accs = [m["accuracy"] for m in runs]
        ratio = f"{statistics.median(walls) / base_median:.2f}" if base_median else "-"
        pairs = [m["wall_s"] / base[m["seed"]] for m in runs if m["seed"] in base]
        paired = f"{statistics.median(pairs):.2f}" if pairs else "-"
        reached = sum(a >= args.target for a in accs)
        # With --model_average the row's accuracy is the average's; the last iterate's beside it.
        iterates = [m["iterate_accuracy"] for m in runs]
        averaged = any(m["evaluated_model"] != "last iterate" for m in runs)
        iterate = (f"{statistics.median(iterates):.4f}, {sum(a >= args.target for a in iterates)}/{len(runs)}"
                   if averaged else "(the same)")
        print(f"{c:<16}{len(runs):>5}  {spread(walls, '{:.2f}'):<27}{ratio:>8}{paired:>8}  "
              f"{spread(accs, '{:.4f}'):<30}{f'{reached}/{len(runs)}':>7}  {iterate:<24}")
    print("\nwhere the gradients came from (median over the runs): the slow worker's share of the "
          "gradients or local steps, mean staleness of its updates and of the fast workers' updates, "
          "fast workers' time held at the server per epoch, slow worker's compute time per batch "
          "(stretched) over the fast workers', the server's evaluations (of the wall time)")
    print(f"{'strategy':<16}{'slow share':>11}{'slow stale':>11}{'fast stale':>11}{'held s/epoch':>13}"
          f"{'slow/fast':>10}{'eval s':>8}")
    for c in order:
        runs = results[c]
        if not runs:
            continue

        def med(field):
            return statistics.median(m[field] for m in runs)

        print(f"{c:<16}{med('slow_share'):>11.3f}{med('slow_staleness'):>11.2f}"
              f"{med('fast_staleness'):>11.2f}{med('fast_held_per_epoch'):>13.3f}"
              f"{med('compute_ratio'):>10.2f}{med('eval_s'):>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"epochs": args.epochs, "node_count": args.node_count, "slowdown": args.slowdown,
                       "repeats": args.repeats, "seed": args.seed, "cores": cores,
                       "load_average": [min(loads), max(loads)],
                       "rows": [{"name": c, "flags": configs[c], "runs": results[c]} for c in order],
                       "failures": failures}, f, indent=1)
    if args.keep:
        print(f"\nrun directories and logs: {work}")
    if failures:
        print(f"\n{len(failures)} run(s) failed and are left out of the table:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
