#!/usr/bin/python3
"""The launch scripts: argument checks, --dry_run plans, ranks from the launcher's environment,
the job each learns from `init_server --check` (a --config file's node_count, a refused flag), and
real runs (run_local.sh, a local sweep over node counts {1, 2}) when the binaries are built
(BUILD_DIR) and Fashion-MNIST is installed."""
import json
import os
import random
import socket
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("SLURM_", "OMPI_", "PMI_"))}
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
BUILT = all(os.access(os.path.join(BUILD, "experiments", b), os.X_OK) for b in ("init_server", "client"))
HAVE_DATA = os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TINY = {"train_samples": 512, "test_samples": 256, "epochs": 1}


def free_ports(count=1):
    """The first of `count` consecutive ports that nothing on this machine holds now, below the
    kernel's ephemeral range (32768 up), so no outgoing connection or port-0 server of a test running
    beside this one can take it before the server binds."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32768 - count)
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free ports between 20000 and 32767")


def run(script, *args, env=None, timeout=30):
    e = dict(CLEAN_ENV, **(env or {}))
    return subprocess.run(["bash", os.path.join(SCRIPTS, script), *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


class LaunchLocal(unittest.TestCase):
    def test_dry_run_plans_a_server_per_node_count_on_its_own_port(self):
        out = run("launch_local.sh", "--nodes", "1,2,4", "--base_port", "40000", "--out", "/tmp/x", "--dry_run",
                  "--", "--epochs", "1")
        self.assertEqual(out.returncode, 0, out.stderr)
        for n, port in ((1, 40000), (2, 40001), (4, 40002)):
            self.assertIn(f"--node_count {n} --working_ports {port} --output /tmp/x/n{n} --epochs 1", out.stdout)
            self.assertIn(f"+ {n} x ", out.stdout)

    def test_by_default_every_server_takes_a_free_port_and_tells_its_clients(self):
        out = run("launch_local.sh", "--nodes", "1,2", "--out", "/tmp/x", "--dry_run")
        self.assertEqual(out.returncode, 0, out.stderr)
        for n in (1, 2):
            self.assertIn(f"--node_count {n} --working_ports 0 --port_file /tmp/x/n{n}/logs/port --output /tmp/x/n{n}",
                          out.stdout)
            self.assertIn(f"+ {n} x ", out.stdout)

    def test_a_simulated_sweep_starts_no_clients(self):
        out = run("launch_local.sh", "--nodes", "2", "--out", "/tmp/x", "--dry_run", "--", "--simulate")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("its 2 workers simulated by init_server: no clients", out.stdout)
        self.assertNotIn("client --ip", out.stdout)

    def test_bad_arguments(self):
        for args in (["--dry_run"], ["--nodes", "1,0", "--dry_run"], ["--nodes", "2", "--base_port", "80"], ["--nodes", "2", "--base_port", "free"],
                     ["--nodes", "2", "--bogus"], ["--nodes", "2", "--dry_run", "--", "--node_count", "3"]):
            out = run("launch_local.sh", *args)
            self.assertEqual(out.returncode, 2, args)
            self.assertTrue(out.stderr.startswith("launch_local: "), out.stderr)

    @unittest.skipUnless(os.path.exists(os.path.join(os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")),
                                                     "experiments", "init_server"))
                         and os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
                         "init_server not built or Fashion-MNIST missing")
    def test_a_real_local_sweep(self):
        with tempfile.TemporaryDirectory() as d:
            # Default ports: each server takes a free one (a fixed port may be any other test's).
            out = run("launch_local.sh", "--nodes", "1,2", "--out", d, "--", "--train_samples", "1200", "--test_samples", "300", "--epochs", "1",
                      "--batch_size", "32", "--bind", "127.0.0.1", "--join_timeout", "60", timeout=180)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            for n in (1, 2):
                summary = json.load(open(os.path.join(d, f"n{n}", "summary.json")))
                self.assertEqual(summary["status"], "completed")
                self.assertEqual(summary["nodes"], n)

    @unittest.skipUnless(BUILT and HAVE_DATA, "init_server not built or Fashion-MNIST missing")
    def test_a_run_that_fails_is_named_with_the_servers_reason_and_its_clients_are_stopped(self):
        with tempfile.TemporaryDirectory() as d, socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            out = run("launch_local.sh", "--nodes", "1", "--base_port", str(port), "--out", d, "--",
                      "--train_samples", "600", "--test_samples", "100", "--epochs", "1", "--bind", "127.0.0.1",
                      timeout=60)
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn(f"n=1 finished with exit code 1 (init_server: cannot listen on 127.0.0.1:{port}", out.stdout)
            self.assertIn("1 run(s) failed", out.stdout)


def write_config(directory, **job):
    path = os.path.join(directory, "job.json")
    with open(path, "w") as f:
        json.dump(job, f)
    return path


@unittest.skipUnless(BUILT, "init_server and client not built (BUILD_DIR)")
class RunLocal(unittest.TestCase):
    @unittest.skipUnless(HAVE_DATA, "Fashion-MNIST missing")
    def test_a_config_files_node_count_decides_how_many_clients_start(self):
        with tempfile.TemporaryDirectory() as d:
            out_dir = os.path.join(d, "run")
            config = write_config(d, node_count=2, output=out_dir, **TINY)
            out = run("run_local.sh", "--config", config, timeout=180)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("starting init_server and 2 clients", out.stdout)
            logs = sorted(f for f in os.listdir(os.path.join(out_dir, "logs")) if f.startswith("client-"))
            self.assertEqual(logs, ["client-0.log", "client-1.log"])
            with open(os.path.join(out_dir, "summary.json")) as f:
                summary = json.load(f)
            self.assertEqual(summary["status"], "completed")
            self.assertEqual(summary["nodes"], 2)

    def test_a_refused_flag_or_config_starts_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out_dir = os.path.join(d, "run")
            bad_config = write_config(d, node_count=2, codec="randomk", **TINY)
            for args, reason in ((["--codec", "randomk"], "init_server: --codec randomk"),
                                 (["--node_count", "2", "--bogus_flag", "1"], "init_server: "),
                                 (["--config", bad_config], "init_server: --codec randomk"),
                                 (["--block_assignment", "non-iid"], "--shards_per_node")):
                with self.subTest(args=args):
                    out = run("run_local.sh", *args, "--output", out_dir)
                    self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
                    self.assertTrue(out.stderr.startswith("init_server: "), out.stderr)
                    self.assertIn(reason, out.stderr)
                    self.assertNotIn("starting", out.stdout)
                    self.assertFalse(os.path.exists(out_dir))


    def test_relative_paths_are_the_callers(self):
        # From another directory than the repository: --dataset, --passphrase_file and --output are
        # read from where the script was started, by the server and by its clients.
        port = next((p for p in range(48000, 48100) if port_is_free(p)), None)
        if port is None:
            self.skipTest("no free port in 48000-48099")
        with tempfile.TemporaryDirectory() as d:
            rng = random.Random(1)
            for n, name in ((128, "train.csv"), (64, "test.csv")):
                with open(os.path.join(d, name), "w") as f:
                    f.write("a,label,b\n")
                    for i in range(n):
                        m = -1 if i % 2 == 0 else 1
                        f.write(f"{rng.gauss(m, 1):.3f},{i % 2},{rng.gauss(m, 1):.3f}\n")
            write_secret(d)
            data = ["--label_column", "label", "--dataset", "csv:train=train.csv,test=test.csv", "--epochs", "1",
                    "--batch_size", "16", "--node_count", "2"]
            for name, extra in (("simulated", ["--simulate"]),
                                ("real", ["--passphrase_file", "passphrase", "--working_ports", str(port)])):
                with self.subTest(name):
                    out = subprocess.run(["bash", os.path.join(SCRIPTS, "run_local.sh"), *data, *extra,
                                          "--output", f"out/{name}"], capture_output=True, text=True, timeout=120,
                                         env=CLEAN_ENV, cwd=d)
                    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                    with open(os.path.join(d, "out", name, "summary.json")) as f:
                        self.assertEqual(json.load(f)["status"], "completed")
                    self.assertFalse(os.path.exists(os.path.join(ROOT, "out", name)))


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def write_secret(directory, text="correct horse battery staple 4711"):
    path = os.path.join(directory, "passphrase")
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path, text


class LaunchSsh(unittest.TestCase):
    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_without_a_passphrase_it_needs_insecure(self):
        out = run("launch_ssh.sh", "--hosts", "a,b", "--server_ip", "10.0.0.1", "--dry_run")
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertEqual(out.stderr.count("\n"), 1, out.stderr)
        self.assertIn("launch_ssh: no passphrase", out.stderr)
        self.assertIn("--insecure", out.stderr)
        out = run("launch_ssh.sh", "--hosts", "a,b", "--server_ip", "10.0.0.1", "--dry_run", "--insecure")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("--insecure: no passphrase, so anyone who can reach port 55555 can join", out.stderr)
        self.assertIn("--bind 0.0.0.0", out.stdout)
        self.assertNotIn("--passphrase_file", out.stdout)
        out = run("launch_ssh.sh", "--hosts", "a,b", "--server_ip", "10.0.0.1", "--dry_run",
                  env={"PSGD_PASSPHRASE": "from the environment"})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("client --ip 10.0.0.1 --port 55555 --passphrase_file -' (passphrase on stdin)", out.stdout)
        self.assertNotIn("from the environment", out.stdout + out.stderr)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_nodes_plans_one_job_per_node_count_on_the_first_slots(self):
        out = run("launch_ssh.sh", "--hosts", "a,b,c", "--per_host", "2", "--nodes", "2,6", "--server_ip",
                  "10.0.0.1", "--dry_run", "--insecure", "--", "--epochs", "1", "--output", "/tmp/psgd-nodes")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("launch_ssh: --nodes: the job with 2 workers", out.stdout)
        self.assertIn("2 workers on 3 host(s) x 2 (the first 2 slots)", out.stdout)
        self.assertIn("--node_count 2 --working_ports 55555 --epochs 1", out.stdout)
        self.assertIn("run directory /tmp/psgd-nodes-n2", out.stdout)
        self.assertIn("run directory /tmp/psgd-nodes-n6", out.stdout)
        self.assertIn("--node_count 6 ", out.stdout)
        self.assertEqual(out.stdout.count("client: "), 8)
        # The first two slots are host a's (--per_host 2).
        first = out.stdout.split("the job with 6 workers")[0]
        self.assertEqual(first.count("BatchMode=yes a "), 2)
        self.assertNotIn("BatchMode=yes b ", first)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_nodes_refusals_start_nothing(self):
        cases = [(["--hosts", "a,b", "--nodes", "2,4"], "--nodes: 4 workers, but the hosts give only 2 slot(s)"),
                 (["--hosts", "a,b", "--nodes", "2,x"], "--nodes 2,x: give node counts like 2,4,8"),
                 (["--hosts", "a,b", "--nodes", "0"], "every count must be at least 1"),
                 (["--cluster", "/nonexistent.json", "--nodes", "2"], "--nodes with --cluster")]
        for args, why in cases:
            out = run("launch_ssh.sh", *args, "--server_ip", "10.0.0.1", "--insecure")
            self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
            self.assertIn(why, out.stderr)
            self.assertNotIn("client: ", out.stdout)  # no job started, not even the first

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_prefix_first_last_addressing(self):
        out = run("launch_ssh.sh", "--host_prefix", "192.168.1.", "--first", "10", "--last", "17", "--per_host", "2",
                  "--server_ip", "10.0.0.1", "--dry_run", "--insecure", "--", "--epochs", "2")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("16 workers on 8 host(s) x 2", out.stdout)
        self.assertIn("--node_count 16 --working_ports 55555", out.stdout)
        self.assertEqual(out.stdout.count("ssh -o BatchMode=yes 192.168.1.17 "), 2)
        self.assertIn("client --ip 10.0.0.1 --port 55555", out.stdout)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_host_list_and_remote_server(self):
        out = run("launch_ssh.sh", "--hosts", "a,b", "--server", "s", "--port", "6000", "--dry_run", "--insecure")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("server: ssh -o BatchMode=yes s ", out.stdout)
        self.assertIn("client --ip s --port 6000", out.stdout)
        # A server given as user@host: the clients dial the host.
        out = run("launch_ssh.sh", "--hosts", "a,b", "--server", "me@s", "--dry_run", "--insecure")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("server: ssh -o BatchMode=yes me@s ", out.stdout)
        self.assertIn("client --ip s --port 55555", out.stdout)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_the_job_from_init_server_check_decides(self):
        with tempfile.TemporaryDirectory() as d:
            out_dir = os.path.join(d, "run")
            config = write_config(d, node_count=2, output=out_dir, epochs=1)
            out = run("launch_ssh.sh", "--hosts", "a,b", "--server_ip", "10.0.0.1", "--dry_run", "--insecure", "--",
                      "--config", config)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(f"2 workers on 2 host(s) x 1; server this machine (10.0.0.1:55555); run directory {out_dir}",
                          out.stdout)
            self.assertIn(f"init_server --node_count 2 --working_ports 55555 --config {config} --bind 0.0.0.0 \n",
                          out.stdout)  # the config's output, not another --output
            # A config for 2 workers on 3 hosts, a refused flag, a simulation: exit 2, nothing started.
            for args, message in ((["--hosts", "a,b,c", "--", "--config", config],
                                   "launch_ssh: the job asks for node_count 2 (its flags or --config), but this "
                                   "launch has 3 workers (3 host(s) x 1)"),
                                  (["--hosts", "a,b", "--per_host", "2", "--", "--node_count", "3"],
                                   "but this launch has 4 workers (2 host(s) x 2)"),
                                  (["--hosts", "a,b", "--", "--codec", "randomk"],
                                   "init_server: --codec randomk"),
                                  (["--hosts", "a,b", "--", "--simulate"], "--simulate runs every worker")):
                with self.subTest(args=args):
                    out = run("launch_ssh.sh", "--server_ip", "10.0.0.1", "--insecure", *args)
                    self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
                    self.assertIn(message, out.stderr)
                    self.assertEqual(out.stdout, "")
            # gc with redundancy 3 is refused for init_server's default 4 workers, not for 3 hosts.
            out = run("launch_ssh.sh", "--hosts", "a,b,c", "--server_ip", "10.0.0.1", "--dry_run", "--insecure", "--",
                      "--codec", "gc", "--redundancy", "3", "--output", out_dir)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("init_server --node_count 3 --working_ports 55555 --codec gc --redundancy 3", out.stdout)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_ssh_port_key_and_known_hosts_reach_every_ssh(self):
        with tempfile.TemporaryDirectory() as d:
            key, known = os.path.join(d, "lab key"), os.path.join(d, "known_hosts")
            for path in (key, known):
                with open(path, "w") as f:
                    f.write("x\n")
            # A relative path is taken from where the script was started (here: d).
            out = subprocess.run(["bash", os.path.join(SCRIPTS, "launch_ssh.sh"), "--hosts", "a,b", "--server", "s",
                                  "--ssh_port", "2222", "--ssh_identity", "lab key", "--ssh_known_hosts",
                                  "known_hosts", "--dry_run", "--insecure"],
                                 capture_output=True, text=True, timeout=30, env=CLEAN_ENV, cwd=d)
            self.assertEqual(out.returncode, 0, out.stderr)
            opts = (f"ssh -o BatchMode=yes -p 2222 -i {d}/lab\\ key -o IdentitiesOnly=yes "
                    f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes ")
            self.assertIn("server: " + opts + "s '", out.stdout)
            self.assertEqual(out.stdout.count("client: " + opts), 2)
            for args, why in ((["--ssh_port", "0"], "ssh port 0: not a port"),
                              (["--ssh_identity", os.path.join(d, "none")], "cannot read the ssh key"),
                              (["--ssh_known_hosts", os.path.join(d, "none")], "cannot read the known_hosts file"),
                              (["--ssh", ""], "--ssh: give an ssh command")):
                with self.subTest(args=args):
                    out = run("launch_ssh.sh", "--hosts", "a,b", "--server_ip", "10.0.0.1", "--dry_run", "--insecure",
                              *args)
                    self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
                    self.assertTrue(out.stderr.startswith("launch_ssh: "), out.stderr)
                    self.assertIn(why, out.stderr)
                    self.assertEqual(out.stderr.count("\n"), 1, out.stderr)

    def test_bad_arguments(self):
        for args in ([], ["--hosts", "a", "--host_prefix", "x"], ["--host_prefix", "h", "--first", "5", "--last", "2"],
                     ["--host_prefix", "h", "--first", "a", "--last", "2"], ["--hosts", "a", "--port", "0"],
                     ["--hosts", "a", "--per_host", "0"], ["--hosts", "a", "--", "--working_ports", "1"]):
            out = run("launch_ssh.sh", *args, "--dry_run")
            self.assertEqual(out.returncode, 2, args)


class LaunchSlurm(unittest.TestCase):
    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_rank_zero_is_the_server(self):
        for env in ({"SLURM_PROCID": "0", "SLURM_NTASKS": "5", "SLURM_JOB_NODELIST": "n1"},
                    {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "5"},
                    {"PMI_RANK": "0", "PMI_SIZE": "5"}):
            out = run("launch_slurm.sh", "--server", "n1", "--dry_run", "--insecure", "--", "--epochs", "3", env=env)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("rank 0 of 5", out.stderr)
            self.assertIn("init_server --node_count 4 --working_ports 55555 --epochs 3", out.stderr)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_other_ranks_are_clients_of_the_first_slurm_host(self):
        out = run("launch_slurm.sh", "--port", "7000", "--dry_run", "--insecure",
                  env={"SLURM_PROCID": "3", "SLURM_NTASKS": "5", "SLURM_JOB_NODELIST": "nodeA"})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("rank 3 of 5", out.stderr)
        self.assertIn("client --ip nodeA --port 7000", out.stderr)

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_every_rank_checks_the_job_first(self):
        with tempfile.TemporaryDirectory() as d:
            config = write_config(d, node_count=2, epochs=1)
            for rank in ("0", "2"):
                env = {"SLURM_PROCID": rank, "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "n1"}
                out = run("launch_slurm.sh", "--dry_run", "--insecure", "--", "--config", config, env=env)
                self.assertEqual(out.returncode, 0, out.stderr)
                env["SLURM_NTASKS"] = "5"
                out = run("launch_slurm.sh", "--dry_run", "--", "--config", config, env=env)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn("the job asks for node_count 2 (its flags or --config), but this launch has 4 workers",
                              out.stderr)
                out = run("launch_slurm.sh", "--", "--codec", "randomk", env=env)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertTrue(out.stderr.startswith("init_server: --codec randomk"), out.stderr)
                self.assertNotIn(f"rank {rank} of", out.stderr)  # nothing started

    @unittest.skipUnless(BUILT, "init_server not built (BUILD_DIR): the launchers check the job with it")
    def test_clients_name_the_passphrase_file_never_the_secret(self):
        with tempfile.TemporaryDirectory() as d:
            secret, text = write_secret(d)
            env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "n1"}
            out = run("launch_slurm.sh", "--dry_run", env=env)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn("launch_slurm: no passphrase", out.stderr)
            self.assertIn("--insecure", out.stderr)
            out = run("launch_slurm.sh", "--dry_run", "--", "--passphrase_file", secret, env=env)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(f"client --ip n1 --port 55555 --connect_timeout 120 --passphrase_file {secret}", out.stderr)
            self.assertNotIn(text, out.stdout + out.stderr)
            out = run("launch_slurm.sh", "--dry_run", env=dict(env, PSGD_PASSPHRASE=text))
            self.assertEqual(out.returncode, 0, out.stderr)  # the environment reaches the client itself
            self.assertNotIn(text, out.stdout + out.stderr)
            self.assertNotIn("--insecure", out.stderr)

    def test_bad_environments(self):
        cases = [({}, ["--server", "a"]), ({"PMI_RANK": "0", "PMI_SIZE": "1"}, ["--server", "a"]),
                 ({"PMI_RANK": "1", "PMI_SIZE": "3"}, []), ({"PMI_RANK": "x", "PMI_SIZE": "3"}, ["--server", "a"])]
        for env, args in cases:
            out = run("launch_slurm.sh", *args, "--dry_run", env=env)
            self.assertEqual(out.returncode, 2, env)


if __name__ == "__main__":
    unittest.main()
