#!/usr/bin/python3
"""The DDP benchmark (bench/ddp/ddp_mlp.py) and the driver that compares it with psgd
(bench/ddp_compare.py): argument checks, and small real runs when PyTorch, the dataset and the
binaries are there (BUILD_DIR)."""
import json
import math
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
DDP = os.path.join(ROOT, "bench", "ddp", "ddp_mlp.py")
COMPARE = os.path.join(ROOT, "bench", "ddp_compare.py")
HAVE_DATA = os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
HAVE_TORCH = subprocess.run(["/usr/bin/python3", "-c", "import torch.distributed"],
                            capture_output=True).returncode == 0
BUILT = all(os.access(os.path.join(BUILD, *p), os.X_OK)
            for p in (("experiments", "init_server"), ("experiments", "client"), ("bench", "ssgd_vs_plain")))
SMALL = ["--train_samples", "2048", "--test_samples", "500"]


def run(*cmd, timeout=240):
    return subprocess.run(["/usr/bin/python3", *cmd], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, BUILD_DIR=BUILD), cwd=ROOT)


class Arguments(unittest.TestCase):
    def test_compare_refuses_bad_arguments(self):
        for args in (["--workers", "0"], ["--workers", "a,b"], ["--systems", "mpi"], ["--epochs", "0"],
                     ["--env", "NOEQUALS"]):
            out = run(COMPARE, *args)
            self.assertEqual(out.returncode, 2, args)
            self.assertIn("ddp_compare.py: error:", out.stderr)

    def test_ddp_refuses_bad_arguments(self):
        out = run(DDP, "--workers", "0")
        self.assertEqual(out.returncode, 2)

    def test_ddp_says_where_the_data_is_missing(self):
        out = run(DDP, "--data_dir", "/nonexistent")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("Fashion-MNIST not found in /nonexistent", out.stderr)


@unittest.skipUnless(HAVE_TORCH and HAVE_DATA, "python3-torch (bench/setup_ddp.sh) or Fashion-MNIST missing")
class DdpRun(unittest.TestCase):
    def test_two_processes_train_the_mlp(self):
        out = run(DDP, "--workers", "2", "--epochs", "2", *SMALL)
        self.assertEqual(out.returncode, 0, out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual((r["system"], r["workers"], r["backend"]), ("ddp", 2, "gloo"))
        # Every epoch is one pass over the training set in batches of 128 per worker.
        self.assertEqual(r["iterations"], 2 * math.ceil(2048 / (2 * 128)))
        self.assertEqual(r["samples"], r["iterations"] * 2 * 128)
        self.assertGreater(r["samples_per_second"], 0)
        self.assertAlmostEqual(r["samples"] / r["seconds"], r["samples_per_second"], delta=1)
        self.assertEqual(r["threads_per_process"], max(1, len(os.sched_getaffinity(0)) // 2))
        # Chance is 10 %; the trained model must do clearly better than the initial one.
        self.assertGreater(r["test_accuracy"], max(0.3, r["initial_test_accuracy"] + 0.1))


@unittest.skipUnless(BUILT and HAVE_DATA, "the binaries or Fashion-MNIST missing")
class CompareFailure(unittest.TestCase):
    def test_a_failed_run_is_reported_and_the_table_still_printed(self):
        out = run(COMPARE, "--systems", "ssgd", "--workers", "1,2", "--epochs", "1", *SMALL,
                  "--psgd_flag=--no_such_flag", timeout=120)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("ssgd-n1-r1: FAILED", out.stdout)
        self.assertIn("ssgd-n2-r1: FAILED", out.stdout)
        failed_rows = [line for line in out.stdout.splitlines() if line.startswith("psgd ssgd") and "failed" in line]
        self.assertEqual(len(failed_rows), 2, out.stdout)
        self.assertIn("2 run(s) failed", out.stderr)


@unittest.skipUnless(HAVE_TORCH and HAVE_DATA and BUILT, "python3-torch, Fashion-MNIST or the binaries missing")
class CompareRun(unittest.TestCase):
    def test_one_table_with_every_system_and_its_ratios(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            out = run(COMPARE, "--workers", "2", "--epochs", "1", *SMALL, "--json", os.path.join(d, "r.json"),
                      "--keep", os.path.join(d, "runs"), timeout=400)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            cores = len(os.sched_getaffinity(0))
            rows = {tuple(line.split()[:-7]): line.split()[-7:] for line in out.stdout.splitlines()
                    if line.startswith(("plain", "PyTorch", "psgd ssgd ", "psgd allreduce "))
                    and line.split()[-1] != "apply" and len(line.split()) >= 7 and "%" in line}
            self.assertEqual(set(rows), {("plain", "libtorch", "loop"), ("plain", "loop", f"x{cores}", "together"),
                                         ("PyTorch", "DDP", "(Gloo)"), ("psgd", "ssgd"), ("psgd", "allreduce"),
                                         ("psgd", "allreduce", "shm")},
                             out.stdout)
            with open(os.path.join(d, "r.json")) as f:
                r = json.load(f)
            runs = {(x["system"], x["workers"]): x["results"][0] for x in r["runs"]}
            self.assertEqual(set(runs), {("plain", 1), ("plain_together", cores), ("ddp", 2), ("ssgd", 2),
                                         ("allreduce", 2), ("allreduce_shm", 2)})
            self.assertAlmostEqual(r["nominal_compute_limit"],
                                   r["cores"] * runs[("plain", 1)]["samples_per_second"])
            # The yardstick is the measured limit: one plain loop per core, side by side, summed.
            together = runs[("plain_together", cores)]
            self.assertEqual(len(together["each"]), cores)
            self.assertAlmostEqual(together["samples_per_second"], sum(together["each"]))
            self.assertAlmostEqual(r["measured_compute_limit"], together["samples_per_second"])
            self.assertAlmostEqual(r["compute_limit"], r["measured_compute_limit"])
            ratio = runs[("ssgd", 2)]["samples_per_second"] / r["compute_limit"]
            self.assertEqual(rows[("psgd", "ssgd")][5], f"{ratio:.2f}")
            for (system, n), m in runs.items():
                self.assertGreater(m["samples_per_second"], 0, system)
                self.assertGreater(m["test_accuracy"], 0.3, system)
                # The ratio column is this system's samples/s over DDP's with as many workers.
                if system in ("ssgd", "allreduce", "allreduce_shm"):
                    ratio = m["samples_per_second"] / runs[("ddp", n)]["samples_per_second"]
                    self.assertEqual(rows[("psgd", *system.split("_"))][4], f"{ratio:.2f}")
                    self.assertTrue(os.path.exists(os.path.join(d, "runs", f"{system}-n{n}-r1", "summary.json")))
                    self.assertGreater(m["split_ms"]["compute_s"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
