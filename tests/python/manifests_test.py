#!/usr/bin/python3
"""Every shipped manifest (experiments/manifests/*.json) expands into runs that init_server
accepts: scripts/sweep.py --check gives each run's flags to `init_server --check` (no data, no
training), so a misspelt codec or an incomplete combination of flags fails here, not hours into a
sweep. Needs the built init_server (BUILD_DIR, set by ctest)."""
import glob
import json
import os
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "manifests", "*.json")))


def sweep(*args, cwd=None):
    return subprocess.run(["/usr/bin/python3", SWEEP, *args], capture_output=True, text=True, timeout=500,
                          env=dict(os.environ, BUILD_DIR=BUILD), cwd=cwd)


class ShippedManifests(unittest.TestCase):
    def setUp(self):
        init_server = os.path.join(BUILD, "experiments", "init_server")
        self.assertTrue(os.access(init_server, os.X_OK), f"{init_server} is not built (scripts/build.sh)")

    def test_init_server_accepts_every_run_of_every_manifest(self):
        self.assertGreaterEqual(len(MANIFESTS), 6)
        with tempfile.TemporaryDirectory() as d:
            for path in MANIFESTS:
                with self.subTest(manifest=os.path.basename(path)):
                    out = sweep("--check", path, "--out", os.path.join(d, "sweep"))
                    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                    self.assertRegex(out.stdout, r"init_server accepts all \d+ runs")
                    self.assertFalse(os.path.exists(os.path.join(d, "sweep")))  # --check writes nothing


class RefusedManifest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.manifest = os.path.join(self.tmp.name, "misspelt.json")
        with open(self.manifest, "w") as f:
            json.dump({"name": "misspelt", "grid": {"node_count": [2], "codec": ["plain", "topkk"],
                                                    "placement": [{"block_assignment": "iid"},
                                                                  {"block_assignment": "non-iid"}]},
                       "fixed": {"epochs": 1}}, f)

    def tearDown(self):
        self.tmp.cleanup()

    def refusals(self, stderr):
        return {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in stderr.splitlines()
                if line.startswith("sweep: ssgd-")}

    def test_check_names_each_refused_run_and_init_servers_reason(self):
        out = sweep("--check", self.manifest, "--out", os.path.join(self.tmp.name, "sweep"))
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        refused = self.refusals(out.stderr)
        self.assertEqual(sorted(refused), ["ssgd-plain-n2-r1-non-iid-s1", "ssgd-topkk-n2-r1-iid-s1",
                                           "ssgd-topkk-n2-r1-non-iid-s1"])
        self.assertTrue(refused["ssgd-topkk-n2-r1-iid-s1"].startswith("init_server: --codec topkk"),
                        refused["ssgd-topkk-n2-r1-iid-s1"])
        self.assertIn("--shards_per_node", refused["ssgd-plain-n2-r1-non-iid-s1"])
        self.assertIn("init_server refuses 3 of 4 runs", out.stderr)

    def test_a_sweep_of_it_starts_nothing(self):
        out_dir = os.path.join(self.tmp.name, "sweep")
        out = sweep(self.manifest, "--out", out_dir)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertEqual(len(self.refusals(out.stderr)), 3)
        self.assertIn("the sweep starts none", out.stderr)
        self.assertFalse(os.path.exists(out_dir))

    def test_only_the_selected_runs_are_checked(self):
        out = sweep("--check", self.manifest, "--only", "plain-n2-r1-iid", "--out", os.path.join(self.tmp.name, "s"))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("init_server accepts 1 run\n", out.stdout)


class EmulatedManifest(unittest.TestCase):
    def test_its_network_is_checked_as_the_simulator_reads_it_and_its_job_as_init_server_does(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "lan.json")
            with open(path, "w") as f:
                json.dump({"name": "lan", "emulate": True,
                           "grid": {"node_count": [2], "net_bandwidth": ["100Mbps", "fast"],
                                    "codec": ["plain", "gc"]},
                           "fixed": {"epochs": 1, "slow_worker": 2}}, f)
            out = sweep("--check", path, "--out", os.path.join(d, "sweep"))
            self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
            refused = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in out.stderr.splitlines()
                       if line.startswith("sweep: ssgd-")}
            self.assertEqual(sorted(refused), ["ssgd-gc-n2-r1-iid-s1-net_bandwidth100Mbps",
                                               "ssgd-gc-n2-r1-iid-s1-net_bandwidthfast",
                                               "ssgd-plain-n2-r1-iid-s1-net_bandwidthfast"])
            self.assertIn("--net_bandwidth fast", refused["ssgd-plain-n2-r1-iid-s1-net_bandwidthfast"])
            self.assertIn("--codec gc", refused["ssgd-gc-n2-r1-iid-s1-net_bandwidth100Mbps"])


if __name__ == "__main__":
    unittest.main()
