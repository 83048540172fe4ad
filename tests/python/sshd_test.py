#!/usr/bin/python3
"""launch_ssh.sh and sweep.py --cluster against a real sshd (Debian's openssh-server), as a lab
uses them: the test builds three hosts with scripts/netns.sh (the server's and two workers'), makes
a host key per host and a client key with ssh-keygen, runs `sshd -D -e` inside each namespace on
a port of its own (key login only, the test's public key the only authorised one), writes a cluster
file whose "ssh" object gives that port, the key and a known_hosts file, and, from the server's
namespace, runs launch_ssh.sh --cluster, sweep.py --cluster, and launch_ssh.sh with --hosts, the
--ssh_* flags, the server itself started over ssh (--server) and another build (BUILD_DIR, whose
binaries every host must run). It checks that the real ssh refuses
another key and an unknown host key, that the three runs complete with both workers joined from
their own addresses through sshd's authenticated sessions, that the passphrase is in no process's
command line while they run, that workers/<id>/log.txt arrived, and that nothing the test made is
left (sshd processes, namespaces, keys, /run/sshd when it made it).
Needs root, the ip tool and sshd (scripts/setup_sshd.sh); skipped with one line otherwise."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from cluster_test import BUILD, BUILT, CLEAN_ENV, HAVE_DATA, ROOT, SCRIPTS, netns_why_not, stop_cluster, write
from secret_test import processes_showing

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it must be started by its absolute path
SSH_PORT = 2222  # not ssh's 22: a lab's sshd on another port is what the cluster file's "ssh" is for


def why_not():
    """Why this machine cannot run the test, or None."""
    if not BUILT or not HAVE_DATA:
        return "init_server and client not built (BUILD_DIR) or Fashion-MNIST missing"
    if os.geteuid() != 0:
        return "not root: network namespaces and sshd need root"
    if shutil.which("ip") is None:
        return "no ip tool (apt-get install iproute2)"
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "sshd not installed (scripts/setup_sshd.sh installs openssh-server without starting it)"
    with open("/etc/shadow") as f:  # sshd without PAM refuses a locked account ("!" password)
        for line in f:
            if line.startswith(pwd.getpwuid(os.geteuid()).pw_name + ":!"):
                return "this account is locked in /etc/shadow, and sshd (UsePAM no) refuses locked accounts"
    return netns_why_not()


def alive(pid):
    """Whether pid runs (a zombie has exited), waiting up to 10 s for it to end."""
    for _ in range(200):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except (OSError, IndexError):
            return False
        time.sleep(0.05)
    return True


# Runs in its own bash (its pid owns the namespaces). Builds the hosts, starts sshd in each
# namespace, tries two logins that must fail, then the launches and the sweep from the server's
# namespace. Its EXIT trap removes the namespaces and with them every process inside
# (sshd and its sessions): netns_teardown.
DRIVER = r"""
set -euo pipefail
cd "$ROOT"
source scripts/netns.sh
netns_trap
netns_cluster_create server worker0 worker1
: > "$WORK/known_hosts"
: > "$WORK/sshd.pids"
for i in 0 1 2; do
  ip=$(netns_ip $i)
  ssh-keygen -q -t ed25519 -N '' -C "psgd sshd_test host $i" -f "$WORK/host_key.$i"
  # Key login only, for this user, with the test's key; StrictModes off because the key lies
  # under /tmp (world-writable); no PAM, which would want a login session this namespace has not.
  cat > "$WORK/sshd_config.$i" <<EOF
Port $SSH_PORT
ListenAddress $ip
HostKey $WORK/host_key.$i
PidFile $WORK/sshd.$i.pid
AuthorizedKeysFile $WORK/client_key.pub
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $LOGIN
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
PrintMotd no
PrintLastLog no
EOF
  netns_exec $i "$SSHD" -t -f "$WORK/sshd_config.$i"
  netns_exec $i "$SSHD" -D -e -f "$WORK/sshd_config.$i" 2> "$WORK/sshd.$i.log" &
  echo $! >> "$WORK/sshd.pids"
  echo "[$ip]:$SSH_PORT $(cut -d' ' -f1,2 "$WORK/host_key.$i.pub")" >> "$WORK/known_hosts"
done
for i in 0 1 2; do  # every sshd listens (at most 20 s each)
  for ((t = 0; ; t++)); do
    netns_exec 0 timeout 2 bash -c "exec 3<>/dev/tcp/$(netns_ip $i)/$SSH_PORT" 2>/dev/null && break
    ((t < 100)) || { echo "sshd_test: sshd on $(netns_ip $i) never listened: $(cat "$WORK/sshd.$i.log")"; exit 1; }
    sleep 0.2
  done
done
ssh_to() {  # ssh_to KEY KNOWN_HOSTS: a login to worker0 that runs `true`
  netns_exec 0 ssh -F none -o BatchMode=yes -o ConnectTimeout=20 -p "$SSH_PORT" -i "$1" \
    -o IdentitiesOnly=yes -o UserKnownHostsFile="$2" -o StrictHostKeyChecking=yes "$LOGIN@$(netns_ip 1)" true
}
ssh-keygen -q -t ed25519 -N '' -C "psgd sshd_test other" -f "$WORK/other_key"
: > "$WORK/empty_known_hosts"
if ssh_to "$WORK/other_key" "$WORK/known_hosts" > "$WORK/other_key.out" 2>&1; then
  echo "sshd_test: sshd let another key in"; exit 1
fi
if ssh_to "$WORK/client_key" "$WORK/empty_known_hosts" > "$WORK/unknown_host.out" 2>&1; then
  echo "sshd_test: ssh took a host key that is not in known_hosts"; exit 1
fi
python3 - "$WORK" "$(netns_ip 0)" "$(netns_ip 1)" "$(netns_ip 2)" <<'EOF'
import json, os, sys
work, server, *workers = sys.argv[1:]
json.dump({"server": {"address": server, "port": 47100}, "passphrase_file": work + "/secret",
           "workers": [{"host": w, "user": os.environ["LOGIN"]} for w in workers],
           # the key's path relative to the cluster file's directory
           "ssh": {"port": int(os.environ["SSH_PORT"]), "identity_file": "client_key",
                   "known_hosts": work + "/known_hosts"}},
          open(work + "/cluster.json", "w"))
json.dump({"name": "lab", "fixed": {"node_count": 2, "train_samples": 512, "test_samples": 256, "epochs": 1,
                                     "batch_size": 32, "shared_memory": "off", "join_timeout": 60}},
          open(work + "/manifest.json", "w"))
EOF
echo "sshd_test: hosts $(netns_ip 0) (server), $(netns_ip 1), $(netns_ip 2) (sshd on port $SSH_PORT)"
netns_exec 0 scripts/launch_ssh.sh --cluster "$WORK/cluster.json" -- --output "$WORK/run" --shared_memory off \
  --train_samples 1024 --test_samples 256 --epochs 1 --batch_size 32 --join_timeout 60
netns_exec 0 python3 scripts/sweep.py "$WORK/manifest.json" --cluster "$WORK/cluster.json" --out "$WORK/sweep"
# The flags instead of a cluster file, and init_server on the server's host over ssh as well, from
# another build (BUILD_DIR): wrappers that note which host ran them, then run the real binaries.
mkdir -p "$WORK/alt/experiments"
for b in init_server client; do
  cat > "$WORK/alt/experiments/$b" <<EOF
#!/bin/bash
echo "$b \$(hostname -I | awk '{print \$1}') \$*" >> "$WORK/alt/ran"
exec "$REAL_BIN/$b" "\$@"
EOF
  chmod 755 "$WORK/alt/experiments/$b"
done
cd "$WORK"  # the key and known_hosts given relative to where the script starts
netns_exec 0 env BUILD_DIR="$WORK/alt" "$ROOT/scripts/launch_ssh.sh" --hosts "$LOGIN@$(netns_ip 1),$LOGIN@$(netns_ip 2)" \
  --server "$LOGIN@$(netns_ip 0)" --port 47101 --ssh_port "$SSH_PORT" \
  --ssh_identity client_key --ssh_known_hosts known_hosts -- --passphrase_file "$WORK/secret" \
  --output "$WORK/run_flags" --shared_memory off --train_samples 512 --test_samples 256 --epochs 1 \
  --batch_size 32 --join_timeout 60
"""


class RealSshd(unittest.TestCase):
    def test_launch_and_sweep_over_a_real_sshd_with_the_tests_own_keys(self):
        why = why_not()
        if why:
            self.skipTest(why)
        # ctest's timeout sends SIGTERM: unwind, so that the clean-up below runs.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.addCleanup(signal.signal, signal.SIGTERM, previous)
        made_run_sshd = not os.path.exists("/run/sshd")
        if made_run_sshd:  # sshd's privilege-separation directory (the ssh service makes it)
            os.mkdir("/run/sshd", 0o755)
            print("sshd_test: made /run/sshd, which sshd needs and no running ssh service made; removed at the end")
        login = pwd.getpwuid(os.geteuid()).pw_name
        text = "the lab's passphrase 1618"
        shown, pids, listed = [], [], ""
        try:
            with tempfile.TemporaryDirectory() as d:
                write(os.path.join(d, "secret"), text + "\n", 0o600)
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "psgd sshd_test client", "-f",
                                os.path.join(d, "client_key")], check=True, capture_output=True)
                log = open(os.path.join(d, "driver.log"), "w+")
                self.addCleanup(log.close)
                driver = subprocess.Popen(["bash", "-c", DRIVER], stdout=log, stderr=subprocess.STDOUT, text=True,
                                          env=dict(CLEAN_ENV, ROOT=ROOT, WORK=d, SSHD=SSHD, LOGIN=login,
                                                   SSH_PORT=str(SSH_PORT),
                                                   REAL_BIN=os.path.join(BUILD, "experiments")))
                try:
                    deadline = time.monotonic() + 540
                    while driver.poll() is None and time.monotonic() < deadline:
                        shown += processes_showing(text)  # the secret never in a command line
                        time.sleep(0.05)
                finally:
                    listed = stop_cluster(driver)  # whatever happened, nothing of this cluster stays
                log.seek(0)
                output = log.read()
                with open(os.path.join(d, "sshd.pids")) as f:
                    pids = [int(p) for p in f.read().split()]
                self.assertEqual(driver.returncode, 0, output)
                self.assertEqual(shown, [])
                self.assertNotIn(text, output)
                # The real ssh refuses a key sshd does not know and a host key not in known_hosts.
                with open(os.path.join(d, "other_key.out")) as f:
                    self.assertIn("Permission denied (publickey)", f.read())
                with open(os.path.join(d, "unknown_host.out")) as f:
                    self.assertIn("Host key verification failed", f.read())
                sshd_logs = ""
                for i in (0, 1, 2):
                    with open(os.path.join(d, f"sshd.{i}.log")) as f:
                        sshd_logs += f.read()
                with open(os.path.join(d, "cluster.json")) as f:
                    cluster = json.load(f)
                server_ip = cluster["server"]["address"]
                workers = [w["host"] for w in cluster["workers"]]
                # Three sessions on each worker's sshd (a client of each run), one on the server's
                # (init_server of the last run), each the test's key from the server's host; the two
                # refused logins got none.
                accepted = [line for line in sshd_logs.splitlines() if "Accepted publickey" in line]
                self.assertEqual(len(accepted), 7, sshd_logs)
                for line in accepted:
                    self.assertIn(f"for {login} from {server_ip} ", line)
                for run in (os.path.join(d, "run"), os.path.join(d, "run_flags"), *[os.path.join(d, "sweep", n) for n in os.listdir(
                        os.path.join(d, "sweep")) if n.startswith("ssgd-")]):
                    with self.subTest(run=run):
                        with open(os.path.join(run, "summary.json")) as f:
                            summary = json.load(f)
                        self.assertEqual(summary["status"], "completed")
                        self.assertEqual(summary["nodes"], 2)
                        with open(os.path.join(run, "logs", "server.log")) as f:
                            server_log = f.read()
                        for address in workers:  # every worker joined from its own host's address
                            self.assertIn(f"({address}:", server_log)
                            with open(os.path.join(run, "logs", f"ssh-{login}@{address}-0.log")) as f:
                                self.assertIn("authenticated (the server proved the passphrase)", f.read())
                        for w in (0, 1):  # the workers' logs came home
                            with open(os.path.join(run, "workers", str(w), "log.txt")) as f:
                                self.assertTrue(f.read().strip(), f"workers/{w}/log.txt is empty")
                self.assertEqual(len([n for n in os.listdir(os.path.join(d, "sweep")) if n.startswith("ssgd-")]), 1)
                # BUILD_DIR reached every host of the last launch: its init_server ran over ssh on
                # the server's host (besides this machine's --check) and its client on each worker.
                with open(os.path.join(d, "alt", "ran")) as f:
                    ran = [line.split()[:2] for line in f if " --check" not in line]
                self.assertEqual(sorted(ran), sorted([["init_server", server_ip]] +
                                                     [["client", w] for w in workers]), ran)
                with open(os.path.join(d, "run", "config.json")) as f:
                    self.assertEqual(json.load(f)["cluster"], cluster)
        finally:
            if made_run_sshd:
                shutil.rmtree("/run/sshd", ignore_errors=True)
        # Nothing left: the namespaces, the sshd processes (their sessions lived in the namespaces),
        # the temporary directory with the keys, /run/sshd when the test made it.
        self.assertNotIn(f"psgd-{driver.pid}-", listed)
        self.assertEqual(len(pids), 3)
        for pid in pids:
            self.assertFalse(alive(pid), f"sshd {pid} survived the test")
        self.assertFalse(os.path.exists(d))
        if made_run_sshd:
            self.assertFalse(os.path.exists("/run/sshd"))


if __name__ == "__main__":
    unittest.main()
