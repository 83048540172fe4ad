#!/usr/bin/python3
"""bench/wall_time.py: the table of an emulated sweep beside its simulated prediction, from fake run
directories (tests/python/fixtures.py): time to the target accuracy on each side, the simulator's
error on the epoch time, and runs not measured listed as such."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from fixtures import make_run  # noqa: E402

WALL_TIME = os.path.join(ROOT, "bench", "wall_time.py")
MANIFEST = {"name": "lan", "emulate": True, "grid": {"node_count": [4], "net_bandwidth": ["10Mbps", "100Mbps"]},
            "fixed": {"epochs": 3}}


class WallTimeTable(unittest.TestCase):
    def test_emulated_and_simulated_side_by_side(self):
        with tempfile.TemporaryDirectory() as d:
            emu, sim = os.path.join(d, "lan"), os.path.join(d, "lan-simulated")
            name = "ssgd-plain-n4-r1-iid-s1-net_bandwidth100Mbps"
            # Emulated: 60 s an epoch (1000 samples/s), 0.7 reached at epoch 1. Simulated: 2 s an
            # epoch, the same accuracies.
            make_run(os.path.join(emu, name), nodes=4, samples_per_second=1000.0)
            with open(os.path.join(emu, name, "sweep_run.json"), "w") as f:
                json.dump({"load_average": {"start": [1.25, 1, 1]}}, f)
            make_run(os.path.join(sim, name), nodes=4, virtual=True)
            with open(os.path.join(emu, "sweep.json"), "w") as f:
                json.dump({"manifest": MANIFEST, "runs": [{"name": name}]}, f)
            out = subprocess.run(["/usr/bin/python3", WALL_TIME, emu, "--target_accuracy", "0.8", "--markdown"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.stdout.splitlines()[2:]]
            rows = {c[1]: c for c in cells}
            self.assertEqual(len(rows), 2)
            measured = rows["100Mbps"]
            self.assertEqual(measured[3:], ["120.0", "4.0", "60.00", "2.00", "-96.7 %", "0.8500", "19.2", "1.25"])
            # The 10 Mbit/s run was never made: said so, not left out.
            self.assertIn("not measured (missing)", rows["10Mbps"][3])

    def test_a_directory_that_is_not_a_sweep_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(["/usr/bin/python3", WALL_TIME, d], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 2)
            self.assertIn("not a sweep directory", out.stderr)


if __name__ == "__main__":
    unittest.main()
