#!/usr/bin/python3
"""The cluster file: init_server --cluster F (what it sets, what it refuses, config.json's record)
and launch_ssh.sh --cluster F (also with BUILD_DIR naming another build), ending in runs on
network namespaces (scripts/netns.sh; needs root, skipped with its reason elsewhere) in which `ssh`
is a stand-in that runs each command in the namespace of the host it names: an authenticated
4-host run, and a --local_data run whose two worker hosts each train on the file the cluster
file's "dataset" names for them (an IDX directory and a CSV). Just over 400 lines: the runs share
one namespace fixture, which is read best beside them."""
import json
import os
import re
import subprocess
import tempfile
import unittest

from launch_test import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
INIT_SERVER = os.path.join(BUILD, "experiments", "init_server")
BUILT = all(os.access(os.path.join(BUILD, "experiments", b), os.X_OK) for b in ("init_server", "client"))
HAVE_DATA = os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "PSGD_"))}


def netns_why_not():
    """Why this machine cannot build namespaces, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    out = subprocess.run(["bash", os.path.join(SCRIPTS, "netns.sh"), "check"], capture_output=True, text=True)
    return None if out.returncode == 0 else out.stdout.strip() + out.stderr.strip()


def stop_cluster(driver):
    """Kills a namespace driver still running and removes whatever it built (its own trap removes it;
    this covers a driver that was killed). Returns `ip netns list` afterwards."""
    if driver.poll() is None:
        driver.kill()
        driver.wait()
    subprocess.run(["bash", os.path.join(SCRIPTS, "netns.sh"), "teardown", str(driver.pid)],
                   capture_output=True, timeout=60)
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def check(*args):
    return subprocess.run([INIT_SERVER, "--check", *args], capture_output=True, text=True, env=CLEAN_ENV)


@unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR)")
class ClusterFlag(unittest.TestCase):
    def test_the_file_sets_node_count_port_and_passphrase(self):
        with tempfile.TemporaryDirectory() as d:
            cluster = {"server": {"address": "10.9.0.1", "port": 6001},
                       "passphrase_file": os.path.join(d, "secret"),
                       "workers": [{"host": "a", "slots": 2, "user": "me"},
                                   {"host": "b", "dataset": "csv:/data/train.csv"}]}
            path = write(os.path.join(d, "cluster.json"), json.dumps(cluster))
            # --check reads the passphrase file as a run does: without it, the check fails.
            out = check("--cluster", path)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn("cannot read --passphrase_file " + cluster["passphrase_file"], out.stderr)
            write(cluster["passphrase_file"], "a lab's secret\n", 0o600)
            out = check("--cluster", path)
            self.assertEqual(out.returncode, 0, out.stderr)
            job = json.loads(out.stdout)
            self.assertEqual(job["job"]["node_count"], 3)
            self.assertEqual(job["job"]["working_ports"], [6001])
            self.assertEqual(job["server"]["passphrase_file"], cluster["passphrase_file"])
            self.assertEqual(job["cluster"], cluster)
            self.assertEqual(check("--cluster", path, "--node_count", "3").returncode, 0)

    def test_a_relative_passphrase_file_is_taken_from_the_cluster_files_directory(self):
        with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as elsewhere:
            os.mkdir(os.path.join(d, "lab"))
            write(os.path.join(d, "lab", "secret"), "a lab's secret\n", 0o600)
            cluster = {"server": {"address": "10.9.0.1"}, "passphrase_file": "secret",
                       "workers": [{"host": "a"}, {"host": "b"}]}
            path = write(os.path.join(d, "lab", "cluster.json"), json.dumps(cluster))
            out = subprocess.run([INIT_SERVER, "--check", "--cluster", path], capture_output=True, text=True,
                                 env=CLEAN_ENV, cwd=elsewhere)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout)["server"]["passphrase_file"], os.path.join(d, "lab", "secret"))
            # ... and the launcher, started from another directory with a relative --cluster, finds it.
            plan = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster",
                                   os.path.relpath(path, elsewhere), "--dry_run"],
                                  capture_output=True, text=True, env=CLEAN_ENV, cwd=elsewhere)
            self.assertEqual(plan.returncode, 0, plan.stdout + plan.stderr)
            self.assertIn("(passphrase on stdin)", plan.stdout)

    def test_contradictions_and_bad_files_are_refused_in_one_line(self):
        with tempfile.TemporaryDirectory() as d:
            good = {"server": {"address": "10.9.0.1"}, "workers": [{"host": "a"}, {"host": "b"}]}
            path = write(os.path.join(d, "good.json"), json.dumps(good))
            cases = [(["--cluster", path, "--node_count", "3"], "--node_count 3 but the cluster file"),
                     (["--cluster", path, "--working_ports", "7000"], "--working_ports 7000 but the cluster file"),
                     (["--cluster", path, "--simulate"], "--simulate"),
                     (["--cluster", os.path.join(d, "none.json")], "cannot open the file")]
            for name, body, reason in (("nojson", "{", "not valid JSON"),
                                       ("noserver", {"workers": [{"host": "a"}]}, "\"server\""),
                                       ("noworkers", {"server": {"address": "x"}, "workers": []}, "\"workers\""),
                                       ("typo", {"server": {"address": "x"}, "workers": [{"hots": "a"}]},
                                        "workers[0]: unknown key \"hots\""),
                                       ("slots", {"server": {"address": "x"}, "workers": [{"host": "a", "slots": 0}]},
                                        "\"slots\" must be an integer"),
                                       ("sshkey", {"server": {"address": "x"}, "workers": [{"host": "a"}],
                                                   "ssh": {"identity": "k"}}, "ssh: unknown key \"identity\""),
                                       ("sshport", {"server": {"address": "x"}, "workers": [{"host": "a"}],
                                                    "ssh": {"port": 70000}}, "\"port\" must be an integer"),
                                       ("sshtype", {"server": {"address": "x"}, "workers": [{"host": "a"}],
                                                    "ssh": "-p 2222"}, "\"ssh\" must be an object")):
                bad = write(os.path.join(d, name + ".json"), body if isinstance(body, str) else json.dumps(body))
                cases.append((["--cluster", bad], reason))
            for args, reason in cases:
                with self.subTest(args=args):
                    out = check(*args)
                    self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
                    self.assertIn(reason, out.stderr)
                    self.assertEqual(out.stderr.count("\n"), 1, out.stderr)

    def test_launch_ssh_plans_one_client_per_slot_with_its_user_and_dataset(self):
        with tempfile.TemporaryDirectory() as d:
            secret = write(os.path.join(d, "secret"), "s3cret words\n", 0o600)
            cluster = {"server": {"address": "10.9.0.1", "port": 6001}, "passphrase_file": secret,
                       "workers": [{"host": "a", "slots": 2, "user": "me"},
                                   {"host": "b", "dataset": "csv:/data/train.csv"}]}
            path = write(os.path.join(d, "cluster.json"), json.dumps(cluster))
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, "--dry_run",
                                  "--", "--output", os.path.join(d, "run")],
                                 capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("3 workers on 3 host(s) x 1; server this machine (10.9.0.1:6001)", out.stdout)
            self.assertEqual(out.stdout.count("ssh -o BatchMode=yes me@a '"), 2)
            self.assertIn("client --ip 10.9.0.1 --port 6001 --passphrase_file - --dataset csv:/data/train.csv'",
                          out.stdout)
            self.assertIn(f"--cluster {path}", out.stdout)
            self.assertNotIn("s3cret", out.stdout + out.stderr)
            # The "ssh" object: sshd's port, the key (relative to the file's directory) and known_hosts
            # reach every ssh; init_server takes the file and records it whole; as flags they are refused.
            for name in ("lab_key", "hosts"):
                write(os.path.join(d, name), "x\n", 0o600)
            cluster["ssh"] = {"port": 2222, "identity_file": "lab_key", "known_hosts": os.path.join(d, "hosts")}
            write(path, json.dumps(cluster))
            self.assertEqual(json.loads(check("--cluster", path).stdout)["cluster"], cluster)
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, "--dry_run",
                                  "--", "--output", os.path.join(d, "run")],
                                 capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.count(
                f"ssh -o BatchMode=yes -p 2222 -i {d}/lab_key -o IdentitiesOnly=yes -o UserKnownHostsFile={d}/hosts "
                f"-o StrictHostKeyChecking=yes me@a '"), 2, out.stdout)
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, "--ssh_port", "22",
                                  "--dry_run"], capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
            self.assertEqual(out.returncode, 2)
            self.assertIn("not with --ssh_port", out.stderr)
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, "--hosts", "x",
                                  "--dry_run"], capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
            self.assertEqual(out.returncode, 2)
            self.assertIn("not with --hosts", out.stderr)


    def test_launch_ssh_runs_build_dirs_binaries_on_every_host(self):
        # BUILD_DIR names the build every host runs, the server's too (here and over --server),
        # as it names the one this machine's check runs: never the default build/ behind its back.
        with tempfile.TemporaryDirectory() as d:
            alt = os.path.join(d, "asan tree")  # a space, quoted on the remote command line
            os.makedirs(os.path.join(alt, "experiments"))
            for b in ("init_server", "client"):
                os.symlink(os.path.join(BUILD, "experiments", b), os.path.join(alt, "experiments", b))
            secret = write(os.path.join(d, "secret"), "s3cret words\n", 0o600)
            cluster = {"server": {"address": "10.9.0.1", "port": 6001}, "passphrase_file": secret,
                       "workers": [{"host": "a", "slots": 2}, {"host": "b", "dataset": "csv:/data/b.csv"}]}
            path = write(os.path.join(d, "cluster.json"), json.dumps(cluster))
            for server in ([], ["--server", "me@s"]):
                with self.subTest(server=server):
                    out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, *server,
                                          "--dry_run", "--", "--output", os.path.join(d, "run")],
                                         capture_output=True, text=True, env=dict(CLEAN_ENV, BUILD_DIR=alt),
                                         timeout=60)
                    self.assertEqual(out.returncode, 0, out.stderr)
                    shown = alt.replace(" ", "\\ ")
                    lines = [line for line in out.stdout.splitlines() if line.startswith(("  server:", "  client:"))]
                    self.assertEqual(len(lines), 4, out.stdout)
                    for line in lines:
                        self.assertIn(f"&& {shown}/experiments/", line)
                        self.assertNotIn("&& build/experiments", line)
                    self.assertEqual(out.stdout.count(f"{shown}/experiments/client --ip 10.9.0.1 --port 6001"), 3)
            # A BUILD_DIR without binaries is refused before anything starts, naming it.
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--cluster", path, "--dry_run"],
                                 capture_output=True, text=True, env=dict(CLEAN_ENV, BUILD_DIR=os.path.join(d, "none")),
                                 timeout=60)
            self.assertEqual(out.returncode, 2)
            self.assertIn(f"{d}/none/experiments/init_server is not built on this machine", out.stderr)


@unittest.skipUnless(BUILT and HAVE_DATA, "init_server not built (BUILD_DIR) or Fashion-MNIST missing")
class RunLocalCluster(unittest.TestCase):
    def test_run_local_runs_a_cluster_files_job_on_this_machine(self):
        with tempfile.TemporaryDirectory() as d:
            secret = write(os.path.join(d, "secret"), "local words\n", 0o600)
            cluster = {"server": {"address": "127.0.0.1", "port": free_ports()},
                       "passphrase_file": secret, "workers": [{"host": "localhost", "slots": 2}]}
            path = write(os.path.join(d, "cluster.json"), json.dumps(cluster))
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "run_local.sh"), "--cluster", path, "--output",
                                  os.path.join(d, "run"), "--bind", "127.0.0.1", "--train_samples", "512",
                                  "--test_samples", "256", "--epochs", "1"],
                                 capture_output=True, text=True, env=CLEAN_ENV, timeout=180)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("starting init_server and 2 clients", out.stdout)
            with open(os.path.join(d, "run", "config.json")) as f:
                config = json.load(f)
            self.assertEqual(config["cluster"], cluster)
            self.assertEqual(config["job"]["working_ports"], [cluster["server"]["port"]])
            with open(os.path.join(d, "run", "summary.json")) as f:
                self.assertEqual(json.load(f)["status"], "completed")


# Builds five hosts (the server and four workers) with scripts/netns.sh, writes the cluster file
# with their addresses and runs launch_ssh.sh --cluster with a stand-in ssh on PATH that runs each
# command in the namespace of the host it names. Everything is removed on exit (netns_trap).
DRIVER = r"""
set -euo pipefail
cd "$ROOT"
source scripts/netns.sh
netns_trap
netns_cluster_create server worker0 worker1 worker2 worker3
: > "$WORK/hosts"
for i in 0 1 2 3 4; do echo "$(netns_ip $i) $(netns_ns $i)" >> "$WORK/hosts"; done
python3 - "$WORK" "$(netns_ip 0)" "$(netns_ip 1)" "$(netns_ip 2)" "$(netns_ip 3)" "$(netns_ip 4)" <<'EOF'
import json, sys
work, server, *workers = sys.argv[1:]
json.dump({"server": {"address": server, "port": 47000}, "passphrase_file": work + "/secret",
           "workers": [{"host": workers[0], "user": "lab"}, {"host": workers[1]},
                       {"host": workers[2], "dataset": "fashion-mnist"}, {"host": workers[3]}]},
          open(work + "/cluster.json", "w"))
EOF
PATH="$WORK/bin:$PATH" scripts/launch_ssh.sh --cluster "$WORK/cluster.json" --server "$(netns_ip 0)" -- \
  --output "$WORK/run" --shared_memory off --train_samples 1024 --test_samples 256 --epochs 1 \
  --batch_size 32 --join_timeout 60
"""

FAKE_SSH = r"""#!/bin/bash
# ssh stand-in: records its arguments and stdin, runs the command in the named host's namespace.
log=$WORK/ssh/$$.$RANDOM
printf '%s\n' "$@" > "$log.args"
target=${@: -2:1}
ns=$(awk -v h="${target#*@}" '$1 == h {print $2}' "$WORK/hosts")
[[ -n $ns ]] || { echo "fake ssh: no host ${target#*@}" >&2; exit 255; }
echo "$ns" > "$log.ns"
tee "$log.stdin" | ip netns exec "$ns" bash -c "${@: -1}"
"""


# --local_data over the cluster file: a server and two worker hosts, each worker's "dataset" its own
# file (an IDX directory on one host, a CSV on the other, both cut from Fashion-MNIST's training
# split by the test); the server evaluates on its own fashion-mnist test set.
LOCAL_DRIVER = r"""
set -euo pipefail
cd "$ROOT"
source scripts/netns.sh
netns_trap
netns_cluster_create server site_a site_b
: > "$WORK/hosts"
for i in 0 1 2; do echo "$(netns_ip $i) $(netns_ns $i)" >> "$WORK/hosts"; done
python3 - "$WORK" "$(netns_ip 0)" "$(netns_ip 1)" "$(netns_ip 2)" <<'EOF'
import json, sys
work, server, a, b = sys.argv[1:]
json.dump({"server": {"address": server, "port": 47010}, "passphrase_file": work + "/secret",
           "workers": [{"host": a, "dataset": "idx:" + work + "/site_a"},
                       {"host": b, "dataset": "csv:" + work + "/site_b.csv"}]},
          open(work + "/cluster.json", "w"))
EOF
PATH="$WORK/bin:$PATH" scripts/launch_ssh.sh --cluster "$WORK/cluster.json" --server "$(netns_ip 0)" -- --local_data \
  --output "$WORK/run" --shared_memory off --test_samples 2000 --epochs 2 --batch_size 32 \
  --learn_rate 0.05 --join_timeout 60
"""


def fashion_mnist_train():
    """Fashion-MNIST's training split as (images: one bytes object of 784 pixels per row, labels)."""
    import gzip
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        data = f.read()[16:]
    with gzip.open("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz") as f:
        labels = list(f.read()[8:])
    return [data[i * 784:(i + 1) * 784] for i in range(len(labels))], labels


def write_idx(directory, prefix, rows, labels):
    import struct
    with open(os.path.join(directory, prefix + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(rows), 28, 28) + b"".join(rows))
    with open(os.path.join(directory, prefix + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


class ClusterOnNamespaces(unittest.TestCase):
    def test_local_data_from_the_cluster_files_per_host_datasets_learns(self):
        why = netns_why_not() if BUILT and HAVE_DATA else "init_server not built or Fashion-MNIST missing"
        if why:
            self.skipTest(why)
        images, labels = fashion_mnist_train()
        with tempfile.TemporaryDirectory() as d:
            # Site a: 3,000 rows of classes 0-4 (an IDX directory; its t10k files, which a local-data
            # worker does not train on, 10 rows); site b: 2,000 rows of classes 5-9 as a CSV of 784
            # pixel columns (pixel / 255) and the label.
            a = [i for i, label in enumerate(labels) if label <= 4][:3000]
            b = [i for i, label in enumerate(labels) if label >= 5][:2000]
            os.mkdir(os.path.join(d, "site_a"))
            write_idx(os.path.join(d, "site_a"), "train", [images[i] for i in a], [labels[i] for i in a])
            write_idx(os.path.join(d, "site_a"), "t10k", [images[i] for i in b[:10]], [labels[i] for i in b[:10]])
            with open(os.path.join(d, "site_b.csv"), "w") as f:
                f.write(",".join(f"p{k}" for k in range(784)) + ",label\n")
                for i in b:
                    f.write(",".join(f"{v / 255:.6g}" for v in images[i]) + f",{labels[i]}\n")
            write(os.path.join(d, "secret"), "two sites' words\n", 0o600)
            os.mkdir(os.path.join(d, "bin"))
            os.mkdir(os.path.join(d, "ssh"))
            write(os.path.join(d, "bin", "ssh"), FAKE_SSH, 0o755)
            driver = subprocess.Popen(["bash", "-c", LOCAL_DRIVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=dict(CLEAN_ENV, ROOT=ROOT, WORK=d))
            try:
                output, _ = driver.communicate(timeout=400)
            finally:
                listed = stop_cluster(driver)
            self.assertNotIn(f"psgd-{driver.pid}-", listed)
            with open(os.path.join(d, "run", "logs", "server.log")) as f:
                server_log = f.read()
            self.assertEqual(driver.returncode, 0, output + server_log)
            with open(os.path.join(d, "run", "summary.json")) as f:
                summary = json.load(f)
            self.assertEqual(summary["status"], "completed")
            self.assertGreater(summary["final_test_accuracy"], 0.5, server_log)
            with open(os.path.join(d, "cluster.json")) as f:
                cluster = json.load(f)
            # Each worker trained on the file the cluster file names for its host, and joined from it.
            histograms = [[sum(labels[i] == c for i in rows) for c in range(10)] for rows in (a, b)]
            expected = {w["dataset"]: (w["host"], len(rows), h)
                        for w, rows, h in zip(cluster["workers"], (a, b), histograms)}
            self.assertEqual(len(summary["local_data"]), 2)
            for entry in summary["local_data"]:
                host, samples, histogram = expected[entry["dataset"]]
                self.assertEqual(entry["samples"], samples, entry)
                self.assertEqual((entry["label_histogram"] + [0] * 10)[:10], histogram, entry)
                self.assertEqual(entry["test_rows"], 0)
                self.assertRegex(server_log, rf"worker {entry['worker']} joined from \S+ \({re.escape(host)}:")
                self.assertIn(f"trains on its own {entry['dataset']}: {samples:,} samples", server_log)
            with open(os.path.join(d, "run", "config.json")) as f:
                config = json.load(f)
            self.assertEqual(config["cluster"], cluster)
            self.assertEqual(config["data"]["train_samples"], 5000)


    def test_an_authenticated_four_host_run_from_the_cluster_file_completes(self):
        why = netns_why_not() if BUILT and HAVE_DATA else "init_server not built or Fashion-MNIST missing"
        if why:
            self.skipTest(why)
        with tempfile.TemporaryDirectory() as d:
            text = "a lab's passphrase 2718"
            write(os.path.join(d, "secret"), text + "\n", 0o600)
            os.mkdir(os.path.join(d, "bin"))
            os.mkdir(os.path.join(d, "ssh"))
            write(os.path.join(d, "bin", "ssh"), FAKE_SSH, 0o755)
            driver = subprocess.Popen(["bash", "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=dict(CLEAN_ENV, ROOT=ROOT, WORK=d))
            try:
                output, _ = driver.communicate(timeout=200)
            finally:
                listed = stop_cluster(driver)  # whatever happened, nothing of this cluster stays
            self.assertNotIn(f"psgd-{driver.pid}-", listed)
            self.assertEqual(driver.returncode, 0, output)
            self.assertNotIn(text, output)
            with open(os.path.join(d, "run", "summary.json")) as f:
                summary = json.load(f)
            self.assertEqual(summary["status"], "completed")
            self.assertEqual(summary["nodes"], 4)
            with open(os.path.join(d, "run", "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(d, "cluster.json")) as f:
                self.assertEqual(config["cluster"], json.load(f))
            # Five ssh calls, each into its own namespace; the secret only ever on stdin.
            calls = sorted(f[:-len(".args")] for f in os.listdir(os.path.join(d, "ssh")) if f.endswith(".args"))
            self.assertEqual(len(calls), 5, output)
            namespaces = set()
            for call in calls:
                base = os.path.join(d, "ssh", call)
                with open(base + ".args") as f:
                    self.assertNotIn(text, f.read())
                with open(base + ".stdin") as f:
                    self.assertEqual(f.read(), text + "\n")
                with open(base + ".ns") as f:
                    namespaces.add(f.read().strip())
            self.assertEqual(len(namespaces), 5)
            with open(os.path.join(d, "hosts")) as f:
                addresses = [line.split()[0] for line in f]
            with open(os.path.join(d, "run", "logs", "server.log")) as f:
                server_log = f.read()
            for address in addresses[1:]:  # every worker joined from its own host's address
                self.assertIn(f"({address}:", server_log)
            with open(os.path.join(d, "run", "logs", f"ssh-lab@{addresses[1]}-0.log")) as f:
                self.assertIn("authenticated (the server proved the passphrase)", f.read())


if __name__ == "__main__":
    unittest.main()
