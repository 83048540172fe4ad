#!/usr/bin/python3
"""scripts/report.py on fixture run and sweep directories: tables, images, provenance."""
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

REPORT = os.path.join(ROOT, "scripts", "report.py")


def have_matplotlib():
    return subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"], capture_output=True).returncode == 0


def report(d, *extra):
    return subprocess.run(["/usr/bin/python3", REPORT, d, *extra], capture_output=True, text=True, timeout=120)


class SweepReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.dir = os.path.join(cls.tmp.name, "sweep")
        # Throughput 1000, 1800, 3000 samples/s at 1, 2, 4 nodes: speedup 1.8 and 3.0.
        for n, thr in ((1, 1000.0), (2, 1800.0), (4, 3000.0)):
            make_run(os.path.join(d, f"ssgd-plain-n{n}-r1-iid-s1"), nodes=n, samples_per_second=thr)
            failed = os.path.join(d, f"ssgd-topk-n{n}-r1-iid-s1")
            os.makedirs(os.path.join(failed, "logs"))
            with open(os.path.join(failed, "sweep_run.json"), "w") as f:
                json.dump({"name": os.path.basename(failed), "params": {"node_count": n, "codec": "topk"},
                           "status": "failed: exit 2: init_server: --codec topk: unknown value", "exit_code": 2,
                           "command": ["run_local.sh", "--codec", "topk"]}, f)
        with open(os.path.join(d, "sweep.json"), "w") as f:
            json.dump({"name": "fixture", "description": "A fixture sweep.", "seeds": [1],
                       "provenance": {"psgd_revision": "sweep-rev", "host": "sweep-host",
                                      "command_line": "scripts/sweep.py fixture.json",
                                      "libraries": {"python": "3.11"}}}, f)
        cls.out = report(d, "--target_accuracy", "0.8")
        cls.md = open(os.path.join(d, "report.md")).read() if cls.out.returncode == 0 else ""
        cls.html = open(os.path.join(d, "report.html")).read() if cls.out.returncode == 0 else ""

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_writes_both_reports(self):
        self.assertEqual(self.out.returncode, 0, self.out.stderr)
        self.assertTrue(self.out.stdout.strip().endswith("report.html"))
        self.assertIn("<table>", self.html)

    def test_tables(self):
        for title in ("## Runs", "## Scaling over node count", "## Where the workers' time went", "## Failed or diverged runs",
                      "## Sweep provenance", "## Run provenance"):
            self.assertIn(title, self.md)
        # Scaling rows: configuration, nodes, seeds, samples/s, speedup, efficiency.
        self.assertIn("| ssgd/plain | 2 | 1 | 1,800 | 1.80 | 90 % |", self.md)
        self.assertIn("| ssgd/plain | 4 | 1 | 3,000 | 3.00 | 75 % |", self.md)
        # Time to 80 %: the fixture reaches 0.8 at epoch 2, 2 epochs of 60000 / 1000 s.
        self.assertIn("| 120.00 |", self.md)
        self.assertIn("failed: exit 2: init_server: --codec topk: unknown value", self.md)
        self.assertIn("fixture-rev", self.md)
        self.assertIn("sweep-rev", self.md)
        self.assertIn("init_server --node_count 4 --codec plain", self.md)
        self.assertIn("class='failed'", self.html)

    @unittest.skipUnless(have_matplotlib(), "python3-matplotlib not installed")
    def test_images_exist_and_are_referenced(self):
        for name in ("accuracy_loss_epochs.png", "accuracy_time.png", "accuracy_bytes.png", "scaling.png",
                     "time_split.png"):
            path = os.path.join(self.dir, name)
            self.assertTrue(os.path.getsize(path) > 5000, name)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertIn(f"src='{name}'", self.html)
            self.assertIn(f"]({name})", self.md)


class SingleRunReport(unittest.TestCase):
    def test_single_run_with_virtual_time(self):
        with tempfile.TemporaryDirectory() as d:
            run = make_run(os.path.join(d, "run"), nodes=2, virtual=True)
            out = report(run)
            self.assertEqual(out.returncode, 0, out.stderr)
            md = open(os.path.join(run, "report.md")).read()
            self.assertIn("# psgd run: ssgd / plain / 2 workers", md)
            self.assertIn("## Per epoch", md)
            self.assertNotIn("## Scaling", md)
            self.assertNotIn("## Failed or diverged runs", md)
            if have_matplotlib():
                self.assertTrue(os.path.exists(os.path.join(run, "accuracy_time.png")))

    def test_non_iid_runs_are_told_apart_by_their_placement(self):
        # noniid.json: label-sorted shards and Dirichlet proportions are both block_assignment non-iid
        # (summary.json says only that; config.json's job says which).
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import report as report_module
        with tempfile.TemporaryDirectory() as d:
            labels = []
            for name, params in (("iid", {"block_assignment": "iid"}),
                                 ("shards", {"block_assignment": "non-iid", "shards_per_node": 2}),
                                 ("dirichlet", {"block_assignment": "non-iid", "dirichlet_alpha": 0.5})):
                run = make_run(os.path.join(d, name), nodes=4)
                for file, part in (("summary.json", None), ("config.json", "job")):
                    with open(os.path.join(run, file)) as f:
                        content = json.load(f)
                    (content[part] if part else content).update(
                        params if part else {"block_assignment": params["block_assignment"]})
                    with open(os.path.join(run, file), "w") as f:
                        json.dump(content, f)
                labels.append(report_module.Run(run, d).label())
            self.assertEqual(labels, ["ssgd/plain n4", "ssgd/plain non-iid 2 shards/node n4",
                                      "ssgd/plain non-iid Dirichlet(0.5) n4"])

    def test_runs_of_other_settings_are_other_configurations(self):
        # Same seed, same psgd/codec/nodes: only the optimiser (or the learning rate) differs. Each is
        # a scaling curve of its own (not a mean over them counted as seeds) with a label of its own.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import report as report_module
        with tempfile.TemporaryDirectory() as d:
            for n in (1, 2):
                for name, optimizer, lr, thr in (("sgd", "sgd", 0.05, 1000.0), ("adam", "adam", 0.05, 500.0),
                                                 ("sgd-lr0.1", "sgd", 0.1, 2000.0)):
                    run = make_run(os.path.join(d, f"{name}-n{n}"), nodes=n, samples_per_second=thr * n)
                    with open(os.path.join(run, "config.json")) as f:
                        config = json.load(f)
                    # What does not make another job (where it writes, its port) does not split them.
                    config["job"].update(optimizer=optimizer, learn_rate=lr, output=run, working_ports=[40000 + n])
                    with open(os.path.join(run, "config.json"), "w") as f:
                        json.dump(config, f)
            out = report(d)
            self.assertEqual(out.returncode, 0, out.stderr)
            with open(os.path.join(d, "report.md")) as f:
                md = f.read()
            for label in ("ssgd/plain learn_rate=0.05 optimizer=sgd", "ssgd/plain learn_rate=0.05 optimizer=adam",
                          "ssgd/plain learn_rate=0.1 optimizer=sgd"):
                self.assertIn(f"| {label} | 1 | 1 |", md)
                self.assertIn(f"| {label} | 2 | 1 | ", md)
            self.assertIn("| ssgd/plain learn_rate=0.05 optimizer=adam | 2 | 1 | 1,000 | 2.00 | 100 % |", md)
            runs = [report_module.Run(os.path.join(d, name), d) for name in sorted(os.listdir(d))
                    if os.path.isdir(os.path.join(d, name))]
            report_module.distinguish(runs)
            self.assertEqual(len({r.group() for r in runs}), 3)
            self.assertEqual(len({r.label() for r in runs}), 6)  # every legend entry its own

    def test_errors(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(report(os.path.join(d, "missing")).returncode, 1)
            self.assertEqual(report(d).returncode, 1)
            self.assertEqual(report(d, "--target_accuracy", "80").returncode, 2)


if __name__ == "__main__":
    unittest.main()
