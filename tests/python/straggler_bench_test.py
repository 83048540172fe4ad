#!/usr/bin/python3
"""The slow-worker benchmark driver (bench/straggler_compare.py): argument checks, and one small
real run of two strategies when the binaries and Fashion-MNIST are there (BUILD_DIR)."""
import json
import os
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
COMPARE = os.path.join(ROOT, "bench", "straggler_compare.py")
HAVE_DATA = os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
BUILT = all(os.access(os.path.join(BUILD, "experiments", b), os.X_OK) for b in ("init_server", "client"))
SMALL = ["--train_samples", "4096", "--test_samples", "200", "--epochs", "1"]


def run(*args, timeout=200):
    return subprocess.run(["/usr/bin/python3", COMPARE, *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, BUILD_DIR=BUILD), cwd=ROOT)


class Arguments(unittest.TestCase):
    def test_refuses_bad_arguments(self):
        for args in (["--repeats", "0"], ["--configs", "hogwild"], ["--slowdown", "0.5"],
                     ["--add", "noflags"], ["--add", "x="], ["--node_count", "1"]):
            out = run(*args)
            self.assertEqual(out.returncode, 2, args)
            self.assertIn("straggler_compare.py: error:", out.stderr)


@unittest.skipUnless(BUILT and HAVE_DATA, "the binaries or Fashion-MNIST missing")
class SmallRun(unittest.TestCase):
    def test_two_seeds_two_strategies_one_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            out_json = os.path.join(tmp, "out.json")
            out = run("--repeats", "2", "--seed", "5", "--configs", "ssgd,asgd_slr",
                      "--add", "asgd_slr=--psgd asgd --staleness_lr", "--json", out_json,
                      "--keep", os.path.join(tmp, "runs"), *SMALL)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            rows = {}  # the first table's rows
            for line in out.stdout.splitlines():
                words = line.split()
                if words and words[0] in ("ssgd", "asgd_slr"):
                    rows.setdefault(words[0], words)
            self.assertEqual(rows["ssgd"][1], "2")  # runs
            self.assertIn("one worker --slowdown 4", out.stdout)
            with open(out_json) as f:
                j = json.load(f)
            by_name = {r["name"]: r for r in j["rows"]}
            self.assertEqual(by_name["asgd_slr"]["flags"], ["--psgd", "asgd", "--staleness_lr"])
            for name, row in by_name.items():
                self.assertEqual([m["seed"] for m in row["runs"]], [5, 6], name)
                for m in row["runs"]:
                    with open(os.path.join(m["run_dir"], "config.json")) as f:
                        config = json.load(f)
                    self.assertEqual(config["seed"], m["seed"])
                    slow = [w["slowdown"] for w in config["workers"]]
                    self.assertEqual(sorted(slow), [1.0, 1.0, 1.0, 4.0])
                    self.assertGreater(m["wall_s"], 0)
                    self.assertGreater(m["accuracy"], 0.2)
            # ssgd: one gradient of every worker per round, none stale; asgd: the first four
            # gradients were all computed on the initial model, so the staleness is positive.
            for m in by_name["ssgd"]["runs"]:
                self.assertAlmostEqual(m["slow_share"], 0.25)
                self.assertEqual(m["slow_staleness"], 0)
                self.assertEqual(m["staleness_mean"], 0)
            for m in by_name["asgd_slr"]["runs"]:
                self.assertGreater(m["staleness_mean"], 0)
                self.assertGreater(m["slow_share"], 0)
            # The ratio columns of the yardstick are 1 by construction.
            self.assertEqual(rows["ssgd"][5:7], ["1.00", "1.00"])


if __name__ == "__main__":
    unittest.main()
