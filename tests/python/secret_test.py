#!/usr/bin/python3
"""The secret in the launchers, with real processes: run_local.sh --passphrase_file completes
authenticated, a client with a wrong passphrase on its stdin is refused, and launch_ssh.sh against
a stand-in ssh (it records its arguments and stdin, then runs the command on this machine) gives
the server and every client the passphrase on stdin only: never in an argument, never in any
process's command line while the job runs. Needs the binaries (BUILD_DIR) and Fashion-MNIST."""
import json
import os
import subprocess
import tempfile
import time
import unittest

from launch_test import BUILD, BUILT, CLEAN_ENV, HAVE_DATA, SCRIPTS, free_ports, run, write_secret


def processes_showing(text):
    """The pids of processes whose command line contains text."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


@unittest.skipUnless(BUILT and HAVE_DATA, "init_server and client not built (BUILD_DIR) or Fashion-MNIST missing")
class Secret(unittest.TestCase):
    def test_run_local_with_a_passphrase_file_completes_authenticated(self):
        with tempfile.TemporaryDirectory() as d:
            secret, _ = write_secret(d)
            out_dir = os.path.join(d, "run")
            out = run("run_local.sh", "--passphrase_file", secret, "--node_count", "2", "--output", out_dir,
                      "--train_samples", "512", "--test_samples", "256", "--epochs", "1", "--bind", "127.0.0.1",
                      timeout=180)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            with open(os.path.join(out_dir, "summary.json")) as f:
                self.assertEqual(json.load(f)["status"], "completed")
            for w in (0, 1):
                with open(os.path.join(out_dir, "logs", f"client-{w}.log")) as f:
                    self.assertIn("authenticated (the server proved the passphrase)", f.read())

    def test_a_wrong_passphrase_on_stdin_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            secret, _ = write_secret(d)
            port_file = os.path.join(d, "port")
            server = subprocess.Popen(
                [os.path.join(BUILD, "experiments", "init_server"), "--node_count", "1", "--working_ports", "0",
                 "--port_file", port_file, "--passphrase_file", secret, "--bind", "127.0.0.1", "--join_timeout",
                 "60", "--output", os.path.join(d, "run"), "--train_samples", "256", "--test_samples", "128",
                 "--epochs", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CLEAN_ENV)
            try:
                port = ""
                for _ in range(600):
                    if os.path.exists(port_file):
                        with open(port_file) as f:
                            port = f.read().strip()
                    if port or server.poll() is not None:
                        break
                    time.sleep(0.1)
                self.assertTrue(port, "init_server did not start listening")
                client = [os.path.join(BUILD, "experiments", "client"), "--ip", "127.0.0.1", "--port", port,
                          "--passphrase_file", "-", "--connect_timeout", "20"]
                wrong = subprocess.run(client, input="not the passphrase\n", capture_output=True, text=True,
                                       timeout=60, env=CLEAN_ENV)
                self.assertNotEqual(wrong.returncode, 0, wrong.stdout + wrong.stderr)
                self.assertIn("authentication failed", wrong.stdout + wrong.stderr)
                with open(secret) as f:
                    right = subprocess.run(client, stdin=f, capture_output=True, text=True, timeout=120,
                                           env=CLEAN_ENV)
                self.assertEqual(right.returncode, 0, right.stdout + right.stderr)
                self.assertEqual(server.wait(timeout=60), 0)
            finally:
                server.kill()
                server.wait()


FAKE_SSH = """#!/bin/bash
# A stand-in for ssh: records its arguments and its standard input, then runs the remote command
# here (the host is ignored), feeding it what it was given on stdin.
log=$FAKE_SSH_LOG/$$.$RANDOM
printf '%s\\n' "$@" > "$log.args"
tee "$log.stdin" | bash -c "${@: -1}"
"""


def stand_in_ssh(d):
    """An environment whose `ssh` is FAKE_SSH (in d/bin), logging each call into d/ssh; returns
    (env, logdir)."""
    bindir, logdir = os.path.join(d, "bin"), os.path.join(d, "ssh")
    os.mkdir(bindir)
    os.mkdir(logdir)
    with open(os.path.join(bindir, "ssh"), "w") as f:
        f.write(FAKE_SSH)
    os.chmod(os.path.join(bindir, "ssh"), 0o755)
    return dict(CLEAN_ENV, PATH=bindir + ":" + CLEAN_ENV["PATH"], FAKE_SSH_LOG=logdir), logdir

@unittest.skipUnless(BUILT and HAVE_DATA, "init_server and client not built (BUILD_DIR) or Fashion-MNIST missing")
class LaunchSsh(unittest.TestCase):
    def test_nodes_runs_one_authenticated_job_per_node_count(self):
        with tempfile.TemporaryDirectory() as d:
            secret, text = write_secret(d)
            env, logdir = stand_in_ssh(d)
            base = os.path.join(d, "run")
            port = str(free_ports(2))
            out = subprocess.run(
                ["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--hosts", "a,b", "--nodes", "1,2",
                 "--server_ip", "127.0.0.1", "--port", port, "--", "--passphrase_file", secret,
                 "--bind", "127.0.0.1", "--output", base, "--train_samples", "512", "--test_samples", "256",
                 "--epochs", "1", "--join_timeout", "60"],
                capture_output=True, text=True, env=env, timeout=540)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertNotIn(text, out.stdout + out.stderr)
            for n in (1, 2):
                with open(f"{base}-n{n}/summary.json") as f:
                    summary = json.load(f)
                self.assertEqual(summary["status"], "completed")
                self.assertEqual(summary["nodes"], n)
                self.assertEqual(len(summary["worker_files"]), n)
                for w in range(n):  # the workers' results came home
                    self.assertTrue(os.path.exists(f"{base}-n{n}/workers/{w}/trace.csv"))
            # Three clients in all (1 + 2), each over the stand-in ssh with the secret on stdin.
            calls = sorted(f for f in os.listdir(logdir) if f.endswith(".args"))
            self.assertEqual(len(calls), 3)

    def test_sweep_over_a_cluster_file_runs_and_resumes(self):
        with tempfile.TemporaryDirectory() as d:
            secret, text = write_secret(d)
            env, logdir = stand_in_ssh(d)
            port = free_ports()
            cluster = os.path.join(d, "cluster.json")
            with open(cluster, "w") as f:
                json.dump({"server": {"address": "127.0.0.1", "port": port}, "passphrase_file": secret,
                           "workers": [{"host": "a", "slots": 2}]}, f)
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "c", "grid": {"codec": ["plain", "fp16"]},
                           "fixed": {"node_count": 2, "train_samples": 512, "test_samples": 256,
                                     "epochs": 1, "bind": "127.0.0.1", "join_timeout": 60}}, f)
            sweep_dir = os.path.join(d, "sweep")
            cmd = ["python3", os.path.join(SCRIPTS, "sweep.py"), manifest, "--cluster", cluster, "--out", sweep_dir]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("launch_ssh.sh --cluster", out.stdout)
            self.assertNotIn(text, out.stdout + out.stderr)
            for name in os.listdir(sweep_dir):
                if name.startswith("ssgd-"):
                    with open(os.path.join(sweep_dir, name, "summary.json")) as f:
                        self.assertEqual(json.load(f)["status"], "completed")
            self.assertEqual(len([n for n in os.listdir(sweep_dir) if n.startswith("ssgd-")]), 2)
            self.assertEqual(len([f for f in os.listdir(logdir) if f.endswith(".args")]), 4)
            # Resumable as a local sweep: the completed runs are not run again.
            again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
            self.assertIn("2 already completed, 0 to run", again.stdout)
            self.assertEqual(len([f for f in os.listdir(logdir) if f.endswith(".args")]), 4)
            # A run whose node_count is not the file's slots is refused before anything starts.
            with open(manifest, "w") as f:
                json.dump({"name": "c3", "fixed": {"node_count": 3, "epochs": 1}}, f)
            bad = subprocess.run(cmd[:-1] + [sweep_dir + "3"], capture_output=True, text=True, env=env,
                                 timeout=120)
            self.assertEqual(bad.returncode, 2, bad.stdout + bad.stderr)
            self.assertIn("node_count", bad.stdout + bad.stderr)

    def test_sweep_over_resident_workers_needs_no_ssh(self):
        with tempfile.TemporaryDirectory() as d:
            secret, text = write_secret(d)
            port = free_ports()
            cluster = os.path.join(d, "cluster.json")
            with open(cluster, "w") as f:
                json.dump({"server": {"address": "127.0.0.1", "port": port}, "passphrase_file": secret,
                           "workers": [{"host": "a", "slots": 2}]}, f)
            manifest = os.path.join(d, "m.json")
            with open(manifest, "w") as f:
                json.dump({"name": "r", "grid": {"codec": ["plain", "fp16"]},
                           "fixed": {"node_count": 2, "train_samples": 512, "test_samples": 256,
                                     "epochs": 1, "bind": "127.0.0.1", "join_timeout": 60}}, f)
            client = os.path.join(BUILD, "experiments", "client")
            residents = [subprocess.Popen([client, "--ip", "127.0.0.1", "--port", str(port), "--serve",
                                           "--serve_timeout", "300", "--passphrase_file", secret],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                         for _ in range(2)]
            try:
                sweep_dir = os.path.join(d, "sweep")
                cmd = ["python3", os.path.join(SCRIPTS, "sweep.py"), manifest, "--cluster", cluster, "--resident",
                       "--out", sweep_dir]
                out = subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, timeout=540)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertNotIn("launch_ssh", out.stdout)
                runs = [n for n in os.listdir(sweep_dir) if n.startswith("ssgd-")]
                self.assertEqual(len(runs), 2)
                for name in runs:
                    with open(os.path.join(sweep_dir, name, "summary.json")) as f:
                        self.assertEqual(json.load(f)["status"], "completed")
                again = subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, timeout=120)
                self.assertIn("2 already completed, 0 to run", again.stdout)
            finally:
                for p in residents:
                    p.terminate()
                outputs = [p.communicate(timeout=30)[0] for p in residents]
            for p, output in zip(residents, outputs):
                self.assertEqual(p.returncode, 0, output)
                self.assertIn("stopped by a signal after 2 job(s)", output)

    def test_clients_get_the_passphrase_on_stdin_never_on_a_command_line(self):
        with tempfile.TemporaryDirectory() as d:
            secret, text = write_secret(d)
            env, logdir = stand_in_ssh(d)
            out_dir = os.path.join(d, "run")
            port = str(free_ports())
            launch = subprocess.Popen(
                ["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--hosts", "a,b", "--server", "s",
                 "--server_ip", "127.0.0.1", "--port", port, "--", "--passphrase_file", secret,
                 "--bind", "127.0.0.1", "--output", out_dir, "--train_samples", "512", "--test_samples", "256",
                 "--epochs", "1", "--join_timeout", "60"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            shown = []
            while launch.poll() is None:  # the secret never shows in the process list
                shown += processes_showing(text)
                time.sleep(0.05)
            output = launch.stdout.read()
            launch.stdout.close()
            self.assertEqual(launch.returncode, 0, output)
            self.assertEqual(shown, [])
            self.assertNotIn(text, output)
            with open(os.path.join(out_dir, "summary.json")) as f:
                self.assertEqual(json.load(f)["status"], "completed")
            calls = sorted(f for f in os.listdir(logdir) if f.endswith(".args"))
            self.assertEqual(len(calls), 3)  # the server and two clients
            for call in calls:
                with open(os.path.join(logdir, call)) as f:
                    args = f.read()
                self.assertNotIn(text, args)
                self.assertIn("--passphrase_file -", args)
                self.assertNotIn(secret, args)  # the remote side reads stdin, not this machine's file
                with open(os.path.join(logdir, call[:-len("args")] + "stdin")) as f:
                    self.assertEqual(f.read(), text + "\n")


if __name__ == "__main__":
    unittest.main()
