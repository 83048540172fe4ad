#!/usr/bin/env python3
"""psgd against PyTorch DDP on the same job, with the machine's compute limit, in one run.

    bench/ddp_compare.py [--epochs 2] [--workers 1,2,4] [--repeats 1] [--keep DIR] [--model cnn]

Runs, interleaved per repeat so that drift in the machine's speed hits every system alike:
  plain   the one-thread libtorch loop (build/bench/ssgd_vs_plain --plain_only): the yardstick;
          cores x its samples/s is the machine's nominal compute limit
  plain_together  one copy of that loop per core, started side by side (--start_together): the
          sum of their samples/s is the measured compute limit. On a VM two vCPUs may share a
          physical core, caches or memory bandwidth, and then cores x one loop overstates it
  ddp     bench/ddp/ddp_mlp.py (PyTorch DDP, Gloo, CPU) with each worker count
  ssgd    psgd --psgd ssgd (parameter server + clients, scripts/run_local.sh), each worker count
  allreduce  psgd --psgd allreduce (ring between the clients), each worker count
  allreduce_shm  psgd --psgd allreduce --allreduce_backend shm (one shared-memory segment; the
             last worker to arrive sums), each worker count
  ddp_fp16, allreduce_fp16          DDP with fp16_compress_hook; psgd --codec fp16 (on request)
  ddp_powersgd, allreduce_powersgd  DDP with powerSGD_hook rank 4 (start_powerSGD_iter 2, its
                                    minimum); psgd --codec powersgd --codec_rank 4 (on request)
all on the MLP 784-256-10 (or with --model cnn psgd's `--model cnn`, the same network on the DDP
side), Fashion-MNIST, batch 128 per worker, SGD lr 0.05 momentum 0.9, the same epochs, and
prints samples/s (median of the repeats), test accuracy, the ratio to DDP with the same worker
count and to the compute limit; then, for the psgd runs, where each worker's time went
(workers.csv: compute, encode, wait, decode, apply, as seconds per iteration).

Only the Python standard library is needed here; DDP runs under --python (Debian's
/usr/bin/python3 with python3-torch: bench/setup_ddp.sh installs it).
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEMS = ("plain", "plain_together", "ddp", "ssgd", "allreduce", "allreduce_shm", "ddp_fp16", "allreduce_fp16",
           "ddp_powersgd", "allreduce_powersgd")
DEFAULT_SYSTEMS = ("plain", "plain_together", "ddp", "ssgd", "allreduce", "allreduce_shm")
# Compressed allreduce: DDP's communication hook and psgd's --codec under --psgd allreduce.
HOOKS = {"ddp_fp16": "fp16", "ddp_powersgd": "powersgd"}
CODECS = {"allreduce_fp16": ["--codec", "fp16"],
          "allreduce_powersgd": ["--codec", "powersgd", "--codec_rank", "4"],
          "allreduce_shm": ["--allreduce_backend", "shm"]}
PEER = {"ssgd": "ddp", "allreduce": "ddp", "allreduce_shm": "ddp", "allreduce_fp16": "ddp_fp16",
        "allreduce_powersgd": "ddp_powersgd"}
PHASES = ("compute_s", "encode_s", "wait_s", "held_s", "decode_s", "apply_s")


class RunFailed(Exception):
    pass


EXTRA_ENV = {}


def run(cmd, log, timeout, env=None):
    env = dict(env or os.environ, **EXTRA_ENV)
    with open(log, "w") as out:
        try:
            p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                               cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"timed out after {timeout} s: {' '.join(cmd)} (log {log})")
    if p.returncode != 0:
        with open(log) as f:
            tail = f.read()[-600:]
        raise RunFailed(f"exit {p.returncode}: {' '.join(cmd)} (log {log})\n{tail}")
    with open(log) as f:
        return f.read()


def last_json_line(text, what):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RunFailed(f"{what} printed no JSON line")


def data_flags(args):
    flags = []
    if args.train_samples:
        flags += ["--train_samples", str(args.train_samples)]
    if args.test_samples:
        flags += ["--test_samples", str(args.test_samples)]
    return flags


def run_plain(args, work):
    exe = os.path.join(args.build_dir, "bench", "ssgd_vs_plain")
    out = run([exe, "--plain_only", "--model", args.model, "--epochs", str(args.epochs),
               "--batch_size", "128",
               "--repeats", "1", *data_flags(args)], os.path.join(work, "plain.log"), args.timeout)
    r = last_json_line(out, "ssgd_vs_plain --plain_only")
    return {"samples_per_second": r["samples_per_second"], "test_accuracy": r["test_accuracy"],
            "threads": 1}


def run_plain_together(args, work, cores):
    """`cores` copies of the plain loop, unpinned like psgd's and DDP's processes, meeting in a
    directory after loading their data so that they time the same seconds. The measured compute
    limit is the sum of their samples/s."""
    exe = os.path.join(args.build_dir, "bench", "ssgd_vs_plain")
    meet = tempfile.mkdtemp(prefix="together-", dir=work)
    env = dict(os.environ, **EXTRA_ENV)
    procs, logs = [], []
    try:
        for i in range(cores):
            log = os.path.join(work, f"plain-together-{i}.log")
            logs.append(log)
            with open(log, "w") as out:
                procs.append(subprocess.Popen(
                    [exe, "--plain_only", "--model", args.model, "--epochs", str(args.epochs),
                     "--batch_size", "128", "--repeats", "1", "--start_together", meet,
                     "--together", str(cores), *data_flags(args)],
                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
        deadline = time.time() + args.timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                raise RunFailed(f"plain_together timed out after {args.timeout} s (logs {work})")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(meet, ignore_errors=True)
    each = []
    for proc, log in zip(procs, logs):
        with open(log) as f:
            text = f.read()
        if proc.returncode != 0:
            raise RunFailed(f"plain_together: exit {proc.returncode} (log {log})\n{text[-600:]}")
        each.append(last_json_line(text, "ssgd_vs_plain --start_together"))
    return {"samples_per_second": sum(r["samples_per_second"] for r in each),
            "each": [r["samples_per_second"] for r in each],
            "test_accuracy": each[0]["test_accuracy"], "threads": 1}


def run_ddp(args, n, work, hook="allreduce"):
    cmd = [args.python, os.path.join(ROOT, "bench", "ddp", "ddp_mlp.py"), "--model", args.model,
           "--workers", str(n),
           "--epochs", str(args.epochs), "--batch_size", "128", "--lr", "0.05", "--momentum", "0.9",
           "--hook", hook, *data_flags(args)]
    if args.ddp_threads:
        cmd += ["--threads", str(args.ddp_threads)]
    r = last_json_line(run(cmd, os.path.join(work, f"ddp-{hook}-n{n}.log"), args.timeout),
                       "ddp_mlp.py")
    return {"samples_per_second": r["samples_per_second"], "test_accuracy": r["test_accuracy"],
            "threads": r["threads_per_process"]}


def run_psgd(args, system, n, run_dir):
    strategy = "allreduce" if system in CODECS else system
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_local.sh"), "--node_count", str(n),
           "--psgd", strategy, *CODECS.get(system, []), "--model", args.model,
           "--epochs", str(args.epochs),
           "--batch_size", "128",
           "--learn_rate", "0.05", "--momentum", "0.9", "--output", run_dir, *data_flags(args),
           *args.psgd_flag]
    env = dict(os.environ, BUILD_DIR=args.build_dir)
    run(cmd, run_dir + ".log", args.timeout, env)
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    if s.get("status") != "completed":
        raise RunFailed(f"{run_dir}: status {s.get('status')}")
    # Per worker and epoch rows; summed per worker, averaged over workers, per iteration.
    split = {p: 0.0 for p in PHASES}
    iterations = 0
    with open(os.path.join(run_dir, "workers.csv")) as f:
        for row in csv.DictReader(f):
            for p in PHASES:
                split[p] += float(row[p] or 0)
            iterations += int(row["iterations"])
    threads = None
    for log in sorted(os.listdir(os.path.join(run_dir, "logs"))):
        if log.startswith("client-"):
            with open(os.path.join(run_dir, "logs", log)) as f:
                for line in f:
                    if "thread" in line and threads is None:
                        threads = thread_count(line)
    return {"samples_per_second": s["samples_per_second"], "test_accuracy": s["final_test_accuracy"],
            "wall_s": s["wall_seconds"], "threads": threads,
            "split_ms": {p: 1000 * v / max(1, iterations) for p, v in split.items()},
            "iteration_ms": 1000 * s["wall_seconds"] / max(1, s["iterations"])}


def thread_count(line):
    words = line.replace(",", " ").replace("(", " ").replace(")", " ").split()
    for i, w in enumerate(words):
        if w.startswith("thread") and i > 0 and words[i - 1].isdigit():
            return int(words[i - 1])
    return None


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def openblas_core_for_this_cpu():
    """The best OpenBLAS kernels this CPU runs, by the rule of nn/blas_core.cc (None: leave
    OpenBLAS's own choice). Set here for every run, whatever OpenBLAS would detect, so that both
    sides use the same kernels."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return "SkylakeX"
    if {"avx2", "fma"} <= set(flags):
        return "Haswell"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--epochs", type=int, default=2, help="epochs of every run (default 2)")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp (784-256-10) or cnn (psgd's --model cnn: two 5x5 conv+pool layers, "
                        "dense 128); the same network on every side (default mlp)")
    p.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated (default 1,2,4)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each; the median is reported (default 1)")
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"which to run, comma-separated, of {','.join(SYSTEMS)} "
                        f"(default {','.join(DEFAULT_SYSTEMS)})")
    p.add_argument("--build_dir", default=os.environ.get("BUILD_DIR") or os.path.join(ROOT, "build"),
                   help="psgd's build directory (default $BUILD_DIR or build/)")
    p.add_argument("--python", default="/usr/bin/python3",
                   help="the Python with PyTorch for DDP (default /usr/bin/python3, Debian's python3-torch)")
    p.add_argument("--ddp_threads", type=int, default=0,
                   help="torch threads per DDP process (default 0: max(1, cores // workers): DDP has no server process)")
    p.add_argument("--psgd_flag", action="append", default=[],
                   help="extra init_server flag for the psgd runs, repeatable (e.g. --psgd_flag=--timeline)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable for every run, both sides alike, repeatable "
                        "(e.g. --env OMP_WAIT_POLICY=PASSIVE)")
    p.add_argument("--keep", default="", help="keep the psgd run directories and logs here (default: a temporary directory, removed)")
    p.add_argument("--json", default="", help="also write every measurement to this JSON file")
    p.add_argument("--train_samples", type=int, default=0, help="first N training samples only (0: all; for quick checks)")
    p.add_argument("--test_samples", type=int, default=0, help="first N test samples only (0: all)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run before it counts as failed (900)")
    args = p.parse_args()

    try:
        workers = [int(w) for w in args.workers.split(",") if w]
    except ValueError:
        p.error(f"--workers: expected numbers like 1,2,4, got '{args.workers}'")
    systems = [s for s in args.systems.split(",") if s]
    if not workers or min(workers) < 1:
        p.error("--workers: every count must be >= 1")
    if args.epochs < 1 or args.repeats < 1:
        p.error("--epochs and --repeats must be >= 1")
    for kv in args.env:
        name, eq, value = kv.partition("=")
        if not eq or not name:
            p.error(f"--env: expected NAME=VALUE, got '{kv}'")
        EXTRA_ENV[name] = value
    # psgd's programs restart themselves with OpenBLAS's fast kernels when OpenBLAS does not know
    # the CPU (nn/blas_core.cc); PyTorch does not, so both sides get the same choice here.
    if "OPENBLAS_CORETYPE" not in os.environ and "OPENBLAS_CORETYPE" not in EXTRA_ENV:
        core = openblas_core_for_this_cpu()
        if core:
            EXTRA_ENV["OPENBLAS_CORETYPE"] = core
            print(f"ddp_compare: OPENBLAS_CORETYPE={core} for every run (both sides)", flush=True)
    bad = [s for s in systems if s not in SYSTEMS]
    if bad or not systems:
        p.error(f"--systems: unknown {bad}; expected some of {','.join(SYSTEMS)}")
    need = []
    if "plain" in systems or "plain_together" in systems:
        need.append(os.path.join(args.build_dir, "bench", "ssgd_vs_plain"))
    if any(s in PEER for s in systems):
        need += [os.path.join(args.build_dir, "experiments", b) for b in ("init_server", "client")]
    missing = [x for x in need if not os.access(x, os.X_OK)]
    if missing:
        sys.exit(f"ddp_compare: {missing[0]} not built; run scripts/build.sh first")
    if any(s.startswith("ddp") for s in systems) and subprocess.run([args.python, "-c", "import torch.distributed"],
                                           capture_output=True).returncode != 0:
        sys.exit(f"ddp_compare: {args.python} cannot import torch; run bench/setup_ddp.sh")

    cores = len(os.sched_getaffinity(0))
    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="psgd-ddp-compare-")
    os.makedirs(work, exist_ok=True)
    plan = [("plain", 1)] if "plain" in systems else []
    plan += [("plain_together", cores)] if "plain_together" in systems else []
    plan += [(s, n) for n in workers for s in SYSTEMS[2:] if s in systems]
    results = {key: [] for key in plan}
    start = time.time()
    failures = []
    try:
        for r in range(args.repeats):
            for system, n in plan:
                tag = f"{system}-n{n}-r{r + 1}"
                try:
                    if system == "plain":
                        m = run_plain(args, work)
                    elif system == "plain_together":
                        m = run_plain_together(args, work, n)
                    elif system == "ddp":
                        m = run_ddp(args, n, work)
                    elif system in HOOKS:
                        m = run_ddp(args, n, work, HOOKS[system])
                    else:
                        m = run_psgd(args, system, n, os.path.join(work, tag))
                except RunFailed as e:
                    # One failed run does not cost the table: it is reported and left out.
                    failures.append(f"{tag}: {e}")
                    print(f"[{time.time() - start:6.0f} s] {tag}: FAILED: {e}", flush=True)
                    continue
                results[(system, n)].append(m)
                each = (" (" + " + ".join(f"{x:.0f}" for x in m["each"]) + ")") if "each" in m else ""
                print(f"[{time.time() - start:6.0f} s] {tag}: {m['samples_per_second']:9.0f} samples/s{each}, "
                      f"accuracy {100 * m['test_accuracy']:.2f} %", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def median(key, field="samples_per_second"):
        runs = results.get(key)
        return statistics.median(m[field] for m in runs) if runs else None

    plain = median(("plain", 1))
    nominal = cores * plain if plain else None
    measured = median(("plain_together", cores))
    # The yardstick: the measured limit when it was run, else the nominal one.
    limit = measured or nominal
    names = {"plain": "plain libtorch loop", "plain_together": f"plain loop x{cores} together", "ddp": "PyTorch DDP (Gloo)", "ssgd": "psgd ssgd",
             "allreduce": "psgd allreduce", "allreduce_shm": "psgd allreduce shm",
             "ddp_fp16": "DDP fp16 hook",
             "allreduce_fp16": "psgd allreduce fp16", "ddp_powersgd": "DDP powerSGD r4",
             "allreduce_powersgd": "psgd powersgd r4"}
    model = "MLP 784-256-10" if args.model == "mlp" else "CNN (psgd's --model cnn)"
    print(f"\n{model}, Fashion-MNIST, batch 128 per worker, {args.epochs} epoch(s), "
          f"median of {args.repeats}; {cores} cores; nominal compute limit = cores x plain loop"
          + (f" = {nominal:.0f} samples/s" if nominal else " (not measured)")
          + (f"; measured (plain loop x{cores} side by side) = {measured:.0f} samples/s"
             + (f", {measured / nominal:.2f} of nominal" if nominal else "")
             + "; 'vs limit' is against the measured one" if measured else "")
          + "".join(f"; {k}={v}" for k, v in EXTRA_ENV.items()))
    if measured and nominal and measured < 0.8 * nominal:
        print(f"note: {cores} plain loops side by side made {measured / nominal:.2f} of {cores} x one loop: "
              "this run did not have the cores to itself (other processes, or on Linux other sessions: "
              "the scheduler shares the CPU between sessions, not processes, when "
              "/proc/sys/kernel/sched_autogroup_enabled is 1). Ratios within this run hold; "
              "absolute figures and 'vs nominal' do not. bench/README.md, 'What limits the targets'.")
    header = (f"{'system':<22}{'workers':>8}{'threads':>8}{'samples/s':>11}{'accuracy':>10}{'vs DDP':>8}"
              f"{'vs limit':>9}{'vs nominal':>11}")
    # (vs DDP: against DDP with the same worker count and the matching hook, if any)
    print(header)
    print("-" * len(header))
    for key in plan:
        system, n = key
        sps = median(key)
        if sps is None:
            print(f"{names[system]:<22}{n:>8}{'':>8}{'failed':>11}")
            continue
        acc = results[key][-1]["test_accuracy"]
        threads = results[key][-1]["threads"]
        # The ratio to DDP doing the same: plain DDP, or DDP with the matching hook.
        ddp = median((PEER[system], n)) if system in PEER else None
        print(f"{names[system]:<22}{n:>8}{threads if threads is not None else '?':>8}{sps:>11.0f}"
              f"{100 * acc:>9.2f}%{fmt_ratio(sps, ddp):>8}{fmt_ratio(sps, limit):>9}"
              f"{fmt_ratio(sps, nominal):>11}")
    psgd_keys = [k for k in plan if k[0] in PEER]
    if psgd_keys:
        print("\npsgd time per iteration and worker, ms (workers.csv, mean over workers, last repeat;"
              " wait = after sending the gradient until the parameters are back, held = of it, at the server)")
        cols = ("compute_s", "encode_s", "wait_s", "held_s", "decode_s", "apply_s")
        print(f"{'system':<22}{'workers':>8}{'iter':>8}" + "".join(f"{c[:-2]:>9}" for c in cols))
        for key in psgd_keys:
            if not results[key]:
                continue
            m = results[key][-1]
            print(f"{names[key[0]]:<22}{key[1]:>8}{m['iteration_ms']:>8.2f}"
                  + "".join(f"{m['split_ms'][c]:>9.2f}" for c in cols))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "model": args.model, "epochs": args.epochs,
                       "repeats": args.repeats,
                       "compute_limit": limit, "nominal_compute_limit": nominal,
                       "measured_compute_limit": measured,
                       "runs": [{"system": s, "workers": n, "results": results[(s, n)]}
                                for s, n in plan]}, f, indent=1)
    if args.keep:
        print(f"\nrun directories and logs: {work}")
    if failures:
        print(f"\n{len(failures)} run(s) failed and are left out of the medians:", file=sys.stderr)
        for f in failures:
            print("  " + f.splitlines()[0], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
