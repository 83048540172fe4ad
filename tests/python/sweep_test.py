#!/usr/bin/python3
"""Manifest expansion, run names, resume and failure handling of scripts/sweep.py."""
import contextlib
import glob
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)
import sweep  # noqa: E402
from fixtures import make_run  # noqa: E402

MANIFEST = {"name": "t", "grid": {"node_count": [1, 2, 4], "codec": ["plain", "topk"], "seed": [1, 2]},
            "fixed": {"epochs": 2, "nesterov": False, "train_samples": 600}, "flags": ["--timeline"]}


class Expansion(unittest.TestCase):
    def test_counts_and_names(self):
        runs = sweep.expand(MANIFEST)
        self.assertEqual(len(runs), 12)
        names = [r["name"] for r in runs]
        self.assertEqual(len(set(names)), 12)
        self.assertIn("ssgd-plain-n1-r1-iid-s1", names)
        self.assertIn("ssgd-topk-n4-r1-iid-s2", names)
        run = next(r for r in runs if r["name"] == "ssgd-topk-n2-r1-iid-s2")
        args = run["args"]
        self.assertEqual(args[args.index("--node_count") + 1], "2")
        self.assertEqual(args[args.index("--codec") + 1], "topk")
        self.assertEqual(args[args.index("--epochs") + 1], "2")
        self.assertNotIn("--nesterov", args)  # false flags are omitted
        self.assertIn("--timeline", args)
        self.assertNotIn("--simulate", args)

    def test_every_shipped_manifest_expands(self):
        counts = {}
        for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "manifests", "*.json"))):
            m = sweep.load_manifest(path)
            counts[m["name"]] = len(sweep.expand(m))
        self.assertEqual(counts["scaling"], 6)  # {1, 2, 4} x {plain, topk}
        self.assertGreaterEqual(len(counts), 5)

    def test_simulate_and_extra_axes(self):
        m = dict(MANIFEST, simulate=True, grid={"node_count": [8], "learn_rate": [0.1, 0.01]})
        runs = sweep.expand(m)
        self.assertEqual([r["name"] for r in runs],
                         ["ssgd-plain-n8-r1-iid-s1-learn_rate0.1", "ssgd-plain-n8-r1-iid-s1-learn_rate0.01"])
        self.assertTrue(all(r["args"][-1] == "--simulate" for r in runs))
        cmd = sweep.command_for(dict(runs[0], dir="/x"), simulate=True)
        self.assertTrue(cmd[0].endswith("experiments/init_server"))

    def test_an_axis_of_objects_sets_flags_together(self):
        m = {"name": "p", "grid": {"node_count": [4], "seed": [1, 2],
                                   "placement": [{"block_assignment": "iid"},
                                                 {"block_assignment": "non-iid", "shards_per_node": 2},
                                                 {"block_assignment": "non-iid", "dirichlet_alpha": 0.5}]},
             "fixed": {"epochs": 1}}
        sweep.validate(m)
        runs = sweep.expand(m)
        self.assertEqual([r["name"] for r in runs],
                         ["ssgd-plain-n4-r1-iid-s1", "ssgd-plain-n4-r1-non-iid-s1-shards_per_node2",
                          "ssgd-plain-n4-r1-non-iid-s1-dirichlet_alpha0.5", "ssgd-plain-n4-r1-iid-s2",
                          "ssgd-plain-n4-r1-non-iid-s2-shards_per_node2",
                          "ssgd-plain-n4-r1-non-iid-s2-dirichlet_alpha0.5"])
        shards = runs[1]
        self.assertEqual(shards["params"], {"epochs": 1, "node_count": 4, "seed": 1,
                                            "block_assignment": "non-iid", "shards_per_node": 2})
        self.assertEqual(shards["args"], ["--epochs", "1", "--node_count", "4", "--seed", "1",
                                          "--block_assignment", "non-iid", "--shards_per_node", "2"])
        self.assertNotIn("placement", " ".join(shards["args"]))
        self.assertNotIn("--shards_per_node", runs[0]["args"])

    def test_bad_axes_of_objects_are_refused(self):
        objects = [{"block_assignment": "iid"}, {"block_assignment": "non-iid", "shards_per_node": 2}]
        for grid, fixed, why in (
                ({"p": [{"codec": "topk"}, "plain"]}, {}, "mixes objects"),
                ({"p": [{}, {"codec": "topk"}]}, {}, "must name one or more flags"),
                ({"p": objects}, {"shards_per_node": 3}, "'shards_per_node' is set by both 'fixed'"),
                ({"block_assignment": ["iid"], "p": objects}, {}, "'block_assignment' is set by both"),
                ({"p": objects, "q": [{"shards_per_node": 4}]}, {}, "'shards_per_node' is set by both"),
                ({"p": [{"output": "/tmp/x"}]}, {}, "set by the sweep itself"),
                ({"p": [{"psgd": "ssgd"}, {"codec": "plain"}]}, {}, "two runs would be named ssgd-plain-n4-r1-iid-s1")):
            with self.assertRaises(sweep.ManifestError, msg=str(grid)) as caught:
                m = {"name": "x", "grid": grid, "fixed": fixed}
                sweep.validate(m)
                sweep.expand(m)
            self.assertIn(why, str(caught.exception))

    def test_an_emulated_manifest_runs_through_run_local_and_checks_its_network_as_the_simulator(self):
        m = {"name": "lan", "emulate": True, "grid": {"node_count": [4], "net_bandwidth": ["10Mbps", "1Gbps"]},
             "fixed": {"epochs": 1, "slow_worker": 3, "codec": "gc", "redundancy": 2}}
        runs = sweep.expand(m)
        self.assertEqual([r["name"] for r in runs], ["ssgd-gc-n4-r2-iid-s1-net_bandwidth10Mbps",
                                                     "ssgd-gc-n4-r2-iid-s1-net_bandwidth1Gbps"])
        args = runs[0]["args"]
        self.assertEqual(args[0], "--emulate")
        for flag, value in (("--net_bandwidth", "10Mbps"), ("--slow_worker", "3")):
            self.assertEqual(args[args.index(flag) + 1], value)  # run_local.sh takes them itself
        job_check, net_check = runs[0]["check"]
        self.assertNotIn("--net_bandwidth", job_check)  # init_server would refuse it without --simulate
        self.assertNotIn("--slow_worker", job_check)
        self.assertIn("--codec", job_check)
        self.assertEqual(net_check, ["--net_bandwidth", "10Mbps", "--node_count", "4", "--simulate"])
        cmd = sweep.command_for(dict(runs[0], dir="/x"), simulate=False)
        self.assertTrue(cmd[1].endswith("scripts/run_local.sh"))

    def test_simulating_a_manifest_gives_the_simulator_the_same_network_and_slow_worker(self):
        m = {"name": "lan", "emulate": True, "grid": {"node_count": [4, 8]},
             "fixed": {"net_bandwidth": "100Mbps", "slow_worker": 3}}
        runs = sweep.expand(m, simulate=True)
        for run, last in zip(runs, ("3", "7")):
            args = run["args"]
            self.assertEqual(args[-1], "--simulate")
            self.assertNotIn("--emulate", args)
            self.assertNotIn("--slow_worker", args)
            self.assertEqual(args[args.index("--stragglers") + 1], f"{last}:x3")
            self.assertEqual(args[args.index("--net_bandwidth") + 1], "100Mbps")
            self.assertEqual(run["check"], [args])
        # The same run names, so that the two sweeps line up.
        self.assertEqual([r["name"] for r in runs], [r["name"] for r in sweep.expand(m)])
        with self.assertRaises(sweep.ManifestError):
            sweep.expand(dict(m, fixed={"slow_worker": 3, "stragglers": "0:x2"}), simulate=True)

    def test_bad_manifests_are_refused(self):
        for bad in ({"name": "x", "grid": {"codec": []}}, {"name": "x y"}, {"name": "x", "gird": {}},
                    {"name": "x", "grid": {"codec": ["a"]}, "fixed": {"codec": "b"}},
                    {"name": "x", "fixed": {"output": "/tmp"}}, {"name": "x", "simulate": True, "emulate": True}):
            with self.assertRaises(sweep.ManifestError, msg=str(bad)):
                sweep.validate(bad)
                sweep.expand(bad)


class Resume(unittest.TestCase):
    def test_completed_runs_are_skipped_others_retried(self):
        with tempfile.TemporaryDirectory() as d:
            make_run(os.path.join(d, "ssgd-plain-n1-r1-iid-s1"), nodes=1)
            make_run(os.path.join(d, "ssgd-plain-n2-r1-iid-s1"), nodes=2, status="failed: lost worker 1")
            states = {r["name"]: r["state"] for r in sweep.plan(MANIFEST, d)}
            self.assertEqual(states["ssgd-plain-n1-r1-iid-s1"], "completed")
            self.assertEqual(states["ssgd-plain-n2-r1-iid-s1"], "retry")
            self.assertEqual(states["ssgd-plain-n4-r1-iid-s1"], "new")
            self.assertEqual(sum(s == "completed" for s in states.values()), 1)
            # A completed run recorded with other flags than the manifest gives now is run again.
            with open(os.path.join(d, "ssgd-plain-n1-r1-iid-s1", "sweep_run.json"), "w") as f:
                json.dump({"params": {"epochs": 99}}, f)
            states = {r["name"]: r["state"] for r in sweep.plan(MANIFEST, d)}
            self.assertEqual(states["ssgd-plain-n1-r1-iid-s1"], "retry")

    def test_a_failing_run_is_recorded_and_the_sweep_continues(self):
        # A fake run_local.sh stands in for the real one: it "completes" plain runs and fails the
        # others the way a run fails once started, which no check can foresee (init_server exits 1
        # after a line on stderr). The check itself is stubbed: it accepts every run.
        with tempfile.TemporaryDirectory() as d:
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "fake", "grid": {"node_count": [1, 2], "codec": ["plain", "topk"]}}, f)
            make_run(os.path.join(d, "sweep", "ssgd-plain-n1-r1-iid-s1"), nodes=1)  # already done
            fake = os.path.join(d, "fake_run_local.py")
            with open(fake, "w") as f:
                f.write(FAKE_LAUNCHER.format(fixtures=HERE))
            checked = []
            old = sweep.command_for, sweep.refused_runs
            sweep.command_for = lambda run, simulate: [sys.executable, fake] + run["args"] + ["--output", run["dir"]]
            sweep.refused_runs = lambda runs: checked.extend(r["name"] for r in runs) or []
            try:
                rc = sweep.main(["sweep.py", manifest, "--out", os.path.join(d, "sweep")])
            finally:
                sweep.command_for, sweep.refused_runs = old
            self.assertEqual(rc, 1)
            # Every run it would start was checked first, not the completed one.
            self.assertEqual(sorted(checked), ["ssgd-plain-n2-r1-iid-s1", "ssgd-topk-n1-r1-iid-s1",
                                               "ssgd-topk-n2-r1-iid-s1"])
            record = json.load(open(os.path.join(d, "sweep", "sweep.json")))
            status = {r["name"]: r["status"] for r in record["runs"]}
            self.assertEqual(status["ssgd-plain-n1-r1-iid-s1"], "completed")
            self.assertTrue(record["runs"][0].get("skipped"))
            self.assertEqual(status["ssgd-plain-n2-r1-iid-s1"], "completed")
            self.assertTrue(status["ssgd-topk-n1-r1-iid-s1"].startswith("failed: exit 1"))
            self.assertIn("lost worker 1", status["ssgd-topk-n2-r1-iid-s1"])
            for key in ("psgd_revision", "host", "command_line", "libraries"):
                self.assertIn(key, record["provenance"])
            self.assertIn("finished_utc", record["provenance"])
            self.assertEqual(record["seeds"], [1])
            run_record = json.load(open(os.path.join(d, "sweep", "ssgd-topk-n2-r1-iid-s1", "sweep_run.json")))
            self.assertEqual(run_record["exit_code"], 1)

    def test_a_refused_run_stops_the_sweep_before_anything_starts(self):
        with tempfile.TemporaryDirectory() as d:
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "fake", "grid": {"codec": ["plain", "topk"]}}, f)
            started = []
            old = sweep.execute, sweep.refused_runs
            sweep.execute = lambda *a: started.append(a)
            sweep.refused_runs = lambda runs: [(r, "init_server: --codec topk: no") for r in runs
                                               if "topk" in r["name"]]
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    rc = sweep.main(["sweep.py", manifest, "--out", os.path.join(d, "sweep")])
            finally:
                sweep.execute, sweep.refused_runs = old
            self.assertEqual(rc, 2)
            self.assertEqual(started, [])
            lines = err.getvalue().splitlines()
            self.assertEqual(lines[0], "sweep: ssgd-topk-n4-r1-iid-s1: init_server: --codec topk: no")
            self.assertIn("refuses 1 of 2 runs", lines[1])
            self.assertFalse(os.path.exists(os.path.join(d, "sweep")))


FAKE_LAUNCHER = """
import os, sys
sys.path.insert(0, {fixtures!r})
from fixtures import make_run
args = sys.argv[1:]
get = lambda k: args[args.index(k) + 1]
out = get("--output")
if get("--codec") != "plain":
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    msg = "init_server: failed: lost worker 1 (connection reset by peer)"
    open(os.path.join(out, "logs", "server.err"), "w").write(msg + "\\n")
    print(msg, file=sys.stderr)
    sys.exit(1)
make_run(out, nodes=int(get("--node_count")), codec="plain")
"""


class CommandLine(unittest.TestCase):
    def test_dry_run_lists_commands_and_runs_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "sweep.py"),
                                  os.path.join(ROOT, "experiments", "manifests", "scaling.json"), "--dry_run",
                                  "--out", os.path.join(d, "s")], capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("6 runs", out.stdout)
            self.assertIn("run_local.sh", out.stdout)
            self.assertFalse(os.path.exists(os.path.join(d, "s")))


class Diverged(unittest.TestCase):
    def test_a_diverged_run_is_counted_apart_and_shown_by_the_report(self):
        # Real simulated runs: the README's example (features ~100, two classes) diverges without
        # --normalize and completes with zscore; the sweep and the report say which.
        build = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
        if not os.access(os.path.join(build, "experiments", "init_server"), os.X_OK):
            self.skipTest(f"no init_server in {build}")
        import random
        with tempfile.TemporaryDirectory() as d:
            rng = random.Random(1)
            for n, name in ((800, "train.csv"), (200, "test.csv")):
                with open(os.path.join(d, name), "w") as f:
                    f.write("a,label,b,c\n")
                    for i in range(n):
                        m = -1 if i % 2 == 0 else 1
                        f.write(",".join([f"{100 * rng.gauss(m, 1):.3f}", str(i % 2)]
                                         + [f"{100 * rng.gauss(m, 1):.3f}" for _ in range(2)]) + "\n")
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "diverge", "simulate": True, "grid": {"normalize": ["none", "zscore"]},
                           "fixed": {"node_count": 2, "epochs": 5, "batch_size": 16, "label_column": "label",
                                     "dataset": f"csv:train={d}/train.csv,test={d}/test.csv"}}, f)
            out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "sweep.py"), manifest,
                                  "--out", os.path.join(d, "sweep")], capture_output=True, text=True,
                                 timeout=200, env=dict(os.environ, BUILD_DIR=build))
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("1/2 runs completed, 0 failed, 1 diverged", out.stdout)
            record = json.load(open(os.path.join(d, "sweep", "sweep.json")))
            status = {r["params"]["normalize"]: r["status"] for r in record["runs"]}
            self.assertTrue(status["none"].startswith("diverged: training loss"), status)
            self.assertEqual(status["zscore"], "completed")
            rep = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "report.py"),
                                  os.path.join(d, "sweep")], capture_output=True, text=True, timeout=200)
            self.assertEqual(rep.returncode, 0, rep.stderr)
            md = open(os.path.join(d, "sweep", "report.md")).read()
            self.assertIn("## Failed or diverged runs", md)
            self.assertIn("diverged: training loss", md)


BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
BUILT = os.access(os.path.join(BUILD, "experiments", "init_server"), os.X_OK)


def write_csv_data(d, train=256, test=64):
    """A two-feature, two-class CSV pair in d (train.csv, test.csv): a simulated epoch of it takes
    about 10 ms."""
    import random
    rng = random.Random(1)
    for n, name in ((train, "train.csv"), (test, "test.csv")):
        with open(os.path.join(d, name), "w") as f:
            f.write("a,label,b\n")
            for i in range(n):
                m = -1 if i % 2 == 0 else 1
                f.write(f"{rng.gauss(m, 1):.3f},{i % 2},{rng.gauss(m, 1):.3f}\n")


def processes():
    """{pid: (ppid, pgid, state, cwd)} of every process this user can see."""
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cwd = os.readlink(f"/proc/{e}/cwd")
        except OSError:
            continue
        out[int(e)] = (int(fields[1]), int(fields[2]), fields[0], cwd)
    return out


def survivors(pgid, directory):
    """Live processes of group pgid, or started in (below) directory."""
    return {pid: p for pid, p in processes().items()
            if p[2] not in ("Z", "X") and (p[1] == pgid or p[3] == directory or p[3].startswith(directory + "/"))}


def wait_for(what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    return None


def port_is_free(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Stopping(unittest.TestCase):
    """SIGTERM (kill, timeout, Slurm) and SIGHUP stop a sweep as Ctrl-C does: the current run's whole
    process group is stopped, it is recorded as interrupted, the sweep exits 128 + the signal."""

    @unittest.skipUnless(BUILT, f"no init_server in {BUILD}")
    def test_sigterm_stops_a_simulated_run_and_records_it(self):
        # Each run: about 25 s of simulated training, stopped after its first epochs.
        self.sigterm_mid_run(simulate=True, flags=[])

    @unittest.skipUnless(BUILT and os.access(os.path.join(BUILD, "experiments", "client"), os.X_OK),
                         f"no init_server and client in {BUILD}")
    def test_sigterm_stops_run_local_its_server_and_its_clients(self):
        # run_local.sh, init_server and two clients (their own processes, on a port of 48000-48199).
        port = next((p for p in range(48100, 48200) if port_is_free(p)), None)
        if port is None:
            self.skipTest("no free port in 48100-48199")
        self.sigterm_mid_run(simulate=False, flags=["--working_ports", str(port)])

    def sigterm_mid_run(self, simulate, flags):
        with tempfile.TemporaryDirectory() as d:
            d = os.path.realpath(d)
            write_csv_data(d)
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "stop", "simulate": simulate, "grid": {"seed": [1, 2]}, "flags": flags,
                           "fixed": {"node_count": 2, "epochs": 2000, "batch_size": 16, "label_column": "label",
                                     "dataset": f"csv:train={d}/train.csv,test={d}/test.csv"}}, f)
            sweep_dir = os.path.join(d, "sweep")
            with open(os.path.join(d, "sweep.out"), "w") as out:
                proc = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "scripts", "sweep.py"), manifest,
                                         "--out", sweep_dir], stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=dict(os.environ, BUILD_DIR=BUILD))
            leader = None
            try:
                # The run's leader: the sweep's child in a session of its own, once it has trained a while.
                leader = wait_for(lambda: next((pid for pid, p in processes().items()
                                                if p[0] == proc.pid and p[1] == pid), None), 15)
                self.assertIsNotNone(leader, "the sweep started no run")
                metrics = os.path.join(sweep_dir, "ssgd-plain-n2-r1-iid-s1", "metrics.csv")
                self.assertTrue(wait_for(lambda: os.path.exists(metrics), 10), "the run never started training")
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(timeout=20)
                with open(os.path.join(d, "sweep.out")) as f:
                    log = f.read()
                self.assertEqual(survivors(leader, d), {}, "processes of the run outlived the sweep")
                self.assertEqual(rc, 143, log)
                self.assertIn("stopped by SIGTERM; 1 run(s) not started", log)
                record = sweep.read_json_file(os.path.join(sweep_dir, "sweep.json"))
                first, second = record["runs"]
                self.assertTrue(first["status"].startswith("interrupted: the sweep got SIGTERM"), first)
                self.assertEqual(second["status"], "pending")
                self.assertEqual(record["interrupted_by"], "SIGTERM")
                self.assertNotIn("finished_utc", record["provenance"])
                run_record = sweep.read_json_file(os.path.join(sweep_dir, first["name"], "sweep_run.json"))
                self.assertEqual(run_record["status"], first["status"])
                # Resuming runs the interrupted run again, then the one never started.
                m = sweep.load_manifest(manifest)
                self.assertEqual([r["state"] for r in sweep.plan(m, sweep_dir)], ["retry", "new"])
            finally:
                kill_group(proc.pid)
                if leader:
                    kill_group(leader)
                proc.wait()

    def test_sighup_kills_what_ignores_sigterm_after_the_grace(self):
        # A stand-in run that ignores SIGTERM and has a child of its own (as run_local.sh's clients
        # are): SIGKILL reaches the whole group after the grace. In this process: the stop signal
        # is sent to the test itself, which sweep.main handles and then restores.
        with tempfile.TemporaryDirectory() as d:
            d = os.path.realpath(d)
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "hup", "grid": {"codec": ["plain", "topk"]}}, f)
            marker = os.path.join(d, "started")
            stand_in = f"trap '' TERM; sleep 60 & echo $$ > {marker}; sleep 60; wait"
            old = sweep.command_for, sweep.refused_runs, sweep.STOP_GRACE_S
            sweep.command_for = lambda run, simulate: ["bash", "-c", stand_in]
            sweep.refused_runs = lambda runs: []
            sweep.STOP_GRACE_S = 1.0
            leader = []

            def hang_up():
                pid = wait_for(lambda: os.path.exists(marker) and open(marker).read().strip(), 15)
                if pid:
                    leader.append(int(pid))
                    time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGHUP)

            before = signal.getsignal(signal.SIGHUP)
            thread = threading.Thread(target=hang_up)
            start = time.monotonic()
            try:
                thread.start()
                with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
                    rc = sweep.main(["sweep.py", manifest, "--out", os.path.join(d, "sweep")])
            finally:
                sweep.command_for, sweep.refused_runs, sweep.STOP_GRACE_S = old
                thread.join()
                for pid in leader:
                    kill_group(pid)
            self.assertEqual(rc, 129, err.getvalue())
            self.assertEqual(len(leader), 1)
            self.assertLess(time.monotonic() - start, 15)
            self.assertEqual(survivors(leader[0], d), {})
            self.assertEqual(signal.getsignal(signal.SIGHUP), before)
            record = sweep.read_json_file(os.path.join(d, "sweep", "sweep.json"))
            self.assertTrue(record["runs"][0]["status"].startswith("interrupted: the sweep got SIGHUP"), record)
            self.assertEqual(record["runs"][1]["status"], "pending")


class RelativePaths(unittest.TestCase):
    @unittest.skipUnless(BUILT, f"no init_server in {BUILD}")
    def test_a_manifests_relative_paths_are_read_from_its_directory_and_out_from_the_callers(self):
        with tempfile.TemporaryDirectory() as d:
            d = os.path.realpath(d)
            here, elsewhere = os.path.join(d, "experiment"), os.path.join(d, "elsewhere")
            os.makedirs(here)
            os.makedirs(elsewhere)
            write_csv_data(here)
            with open(os.path.join(here, "m.json"), "w") as f:
                json.dump({"name": "rel", "simulate": True, "grid": {"seed": [1]},
                           "fixed": {"node_count": 2, "epochs": 1, "batch_size": 16, "label_column": "label",
                                     "dataset": "csv:train=train.csv,test=test.csv"}}, f)
            env = dict(os.environ, BUILD_DIR=BUILD)
            cmd = ["/usr/bin/python3", os.path.join(ROOT, "scripts", "sweep.py"), "../experiment/m.json"]
            out = subprocess.run(cmd + ["--out", "out"], capture_output=True, text=True, timeout=60, cwd=elsewhere,
                                 env=env)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            summary = sweep.read_summary(os.path.join(elsewhere, "out", "ssgd-plain-n2-r1-iid-s1"))
            self.assertEqual(summary["status"], "completed")
            self.assertFalse(os.path.exists(os.path.join(here, "out")))
            # Started from the manifest's own directory, the same sweep reads the same files: it resumes.
            out = subprocess.run(cmd[:2] + ["m.json", "--out", "../elsewhere/out"], capture_output=True, text=True,
                                 timeout=60, cwd=here, env=env)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("1 already completed, 0 to run", out.stdout)

    def test_config_in_a_manifest_is_refused_with_the_reason(self):
        for m in ({"name": "c", "fixed": {"config": "job.json"}}, {"name": "c", "flags": ["--config", "job.json"]},
                  {"name": "c", "grid": {"x": [{"config": "a.json"}]}}):
            with self.assertRaises(sweep.ManifestError, msg=str(m)) as caught:
                sweep.validate(m)
            self.assertIn("run names, the resume check", str(caught.exception))
            self.assertNotIn("set by the sweep itself", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
