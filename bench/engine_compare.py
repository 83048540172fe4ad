#!/usr/bin/env python3
"""psgd's engine against the same training loop in Python PyTorch, one thread, interleaved.

    bench/engine_compare.py [--models mlp,cnn,resnet8] [--repeats 3] [--steps 200]

For each repeat and model, runs one after the other (A B C A B C ...: drift in the machine's
speed hits all alike):
  trainer   build/bench/engine_loop --loop trainer: psgd's nn::Trainer and SGD (what a worker runs)
  trainer_glibc  the same with glibc malloc's defaults (--keep_freed_memory false): psgd before
            nn::keep_freed_memory, which stops each step's activations going back to the kernel
  libtorch  build/bench/engine_loop --loop libtorch: the same network and loop written by hand
  python    bench/engine/plain_loop.py under --python (Debian's python3-torch 1.13, the same
            libtorch underneath)
all with batch 128, SGD lr 0.05 momentum 0.9, one torch thread and OPENBLAS_NUM_THREADS=1
(psgd sets OpenBLAS's threads itself; Python's torch.set_num_threads does not), Fashion-MNIST,
the same OPENBLAS_CORETYPE (psgd's programs choose one when OpenBLAS does not know the CPU, Python would
not: ddp_compare.py's rule); and prints the
median samples/s of each with the ratios trainer/python and libtorch/python. --env NAME=VALUE
is set for every run alike (e.g. DNNL_VERBOSE, OMP_NUM_THREADS). Measurements, not a test: on a
loaded machine only the ratios of one run mean anything (bench/README.md says how to record).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from ddp_compare import openblas_core_for_this_cpu  # the kernels psgd's programs use (nn/blas_core.cc)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("trainer", "trainer_glibc", "libtorch", "python")


def run_one(args, loop, model, env):
    common = ["--model", model, "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--batch_size", str(args.batch_size), "--threads", "1",
              "--train_samples", str(args.train_samples)]
    if loop == "python":
        cmd = [args.python, os.path.join(ROOT, "bench", "engine", "plain_loop.py"), *common]
    elif loop == "trainer_glibc":
        cmd = [os.path.join(args.build_dir, "bench", "engine_loop"), "--loop", "trainer",
               "--keep_freed_memory", "false", *common]
    else:
        cmd = [os.path.join(args.build_dir, "bench", "engine_loop"), "--loop", loop, *common]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if p.returncode != 0:
        raise SystemExit(f"engine_compare: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-800:]}")
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["samples_per_second"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", default="mlp,cnn,resnet8", help="comma-separated (mlp,cnn,resnet8)")
    p.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated, of {','.join(LOOPS)}")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the median is reported (3)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per run (200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (10)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--train_samples", type=int, default=10000, help="samples loaded (10000)")
    p.add_argument("--build_dir", default=os.environ.get("BUILD_DIR") or os.path.join(ROOT, "build"))
    p.add_argument("--python", default="/usr/bin/python3", help="Python with PyTorch (/usr/bin/python3)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for every run alike, repeatable")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run (900)")
    p.add_argument("--json", default="", help="also write every measurement here")
    a = p.parse_args()
    models = [m for m in a.models.split(",") if m]
    loops = [l for l in a.loops.split(",") if l]
    if not models or any(l not in LOOPS for l in loops) or a.repeats < 1 or a.steps < 1:
        p.error("--models must not be empty, --loops among trainer,libtorch,python, "
                "--repeats and --steps >= 1")
    if any(l != "python" for l in loops) and not os.access(
            os.path.join(a.build_dir, "bench", "engine_loop"), os.X_OK):
        sys.exit("engine_compare: build/bench/engine_loop not built; run scripts/build.sh first")
    env = dict(os.environ)
    for kv in a.env:
        name, eq, value = kv.partition("=")
        if not eq or not name:
            p.error(f"--env: expected NAME=VALUE, got '{kv}'")
        env[name] = value
    # psgd's set_compute_threads sets OpenBLAS's threads too; torch.set_num_threads does not, and
    # OpenBLAS would run one thread per core under Python's one torch thread.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "OPENBLAS_CORETYPE" not in env and openblas_core_for_this_cpu():
        env["OPENBLAS_CORETYPE"] = openblas_core_for_this_cpu()
        print(f"engine_compare: OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} for every run", flush=True)
    results = {(m, l): [] for m in models for l in loops}
    start = time.time()
    for r in range(a.repeats):
        for m in models:
            for l in loops:
                sps = run_one(a, l, m, env)
                results[(m, l)].append(sps)
                print(f"[{time.time() - start:6.0f} s] {m:<8} {l:<9} {sps:9.0f} samples/s",
                      flush=True)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nmedian of {a.repeats}, {a.steps} steps of batch {a.batch_size}, 1 thread; "
          f"load average now {load}")
    print(f"{'model':<9}" + "".join(f"{l:>15}" for l in loops)
          + ("".join(f"{l + '/py':>19}" for l in loops if l != "python") if "python" in loops else ""))
    for m in models:
        med = {l: statistics.median(results[(m, l)]) for l in loops}
        ratios = ("".join(f"{med[l] / med['python']:>19.2f}" for l in loops if l != "python")
                  if "python" in loops else "")
        print(f"{m:<9}" + "".join(f"{med[l]:>15.0f}" for l in loops) + ratios)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": a.steps, "repeats": a.repeats,
                       "runs": [{"model": m, "loop": l, "samples_per_second": results[(m, l)]}
                                for m in models for l in loops]}, f, indent=1)


if __name__ == "__main__":
    main()
