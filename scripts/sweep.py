#!/usr/bin/python3
"""Run a sweep manifest: the cross product of its grid, one run directory per point.

    scripts/sweep.py MANIFEST.json [--out SWEEP_DIR] [--dry_run | --list | --check] [--only TEXT]
                                   [--timeout_s S] [--simulate | --cluster F [--resident]]

A manifest (experiments/manifests/*.json) is a JSON object:

    {
      "name": "scaling",                     # default sweep directory: runs/sweeps/<name>
      "description": "...",
      "grid":  {"node_count": [1, 2, 4], "psgd": ["ssgd"], "codec": ["plain", "topk"],
                "redundancy": [1], "block_assignment": ["iid"], "seed": [1, 2]},
      "fixed": {"epochs": 3, "batch_size": 64},  # the same for every run
      "flags": ["--timeline"],                  # raw extra init_server flags (optional)
      "simulate": false,                        # true: init_server --simulate, no clients
      "emulate": false,                         # true: run_local.sh --emulate (an emulated LAN)
      "timeout_s": 900                          # per run (optional)
    }

Every grid and fixed key is an init_server flag (`--key value`; true adds `--key`, false omits it).
Not `config` (nor `--config` in "flags"): run names, the resume check and slow_worker's worker are
read from the manifest's own flags, which a --config file's settings would bypass; give them in
"fixed" instead. `output`, `working_ports`, `port_file` and `check` are the sweep's own.

Relative paths in a manifest's flags ("model": "script:net.pt", "dataset": "npy:x.npy,y.npy", a
"flags" file) are read from the manifest's own directory, wherever the sweep is started from: every
run and its check start there (so a manifest kept beside its files works from any directory, and a
resumed sweep reads the same files). Paths on the command line (MANIFEST, --out, --cluster) are
the caller's: relative to the directory sweep.py is run from. With --cluster F and no --resident
each run goes through launch_ssh.sh, which runs init_server and every client from the repository
(--repo) on each host, so relative paths there are the repository's.
Runs are named <psgd>-<codec>-n<nodes>-r<redundancy>-<block_assignment>-s<seed>, plus
-<key><value> for any other grid key, and run one after another (2-core machines: concurrent
runs would distort each other's timings) through scripts/run_local.sh, or init_server --simulate
alone when "simulate" is true.

Across a lab's hosts: `--cluster F` (a cluster file, README "Running on several machines") starts
each run with scripts/launch_ssh.sh --cluster F (the server here, one client per slot over ssh);
with `--resident` as well, the hosts already run resident workers (client --serve on the file's
server address and port) and each run starts only init_server --cluster F here. Every run's
node_count must be the file's slots (init_server --check refuses it otherwise, before anything
starts); slow_worker, "emulate" and --simulate are refused with --cluster. Resumable as any sweep.

Two keys are run_local.sh's rather than init_server's: `slow_worker` (the last client runs F times
slower) and, with "emulate": true, the network: `net_bandwidth`, `server_bandwidth`,
`host_bandwidth`, `net_latency`, `net_mtu` (every host in a network namespace of its own behind that
cap; root only; see run_local.sh). Both mean the same to the simulator: `--simulate` on the command
line runs any manifest with init_server --simulate instead (slow_worker F becomes --stragglers
<last worker>:xF, the network keys the simulator's own), into SWEEP_DIR-simulated by default, which
gives the simulator's prediction of every run of an emulated sweep (bench/wall_time.py puts the two
side by side).

Flags that only make sense together: a grid axis whose values are JSON objects of flags. Its name
is free (it is not a flag); each run takes one object and all of its keys as flags, e.g.

      "grid": {"placement": [{"block_assignment": "iid"},
                             {"block_assignment": "non-iid", "shards_per_node": 2},
                             {"block_assignment": "non-iid", "dirichlet_alpha": 0.5}], ...}

gives three runs per point of the other axes: ...-iid-s1, ...-non-iid-s1-shards_per_node2 and
...-non-iid-s1-dirichlet_alpha0.5 (an object's keys other than the named ones above are added as
-<key><value>). A key may come from one place only: a fixed key, a plain grid axis or one object
axis.

Checked before anything starts: every run the sweep would start is given to
`init_server --check <its flags>` (one quick process per run; it loads no data), and when
init_server refuses any of them the sweep starts nothing and exits 2 with one line per refused run
(its name and init_server's reason). `--check` does only that, for every run of the manifest.
init_server is BUILD_DIR/experiments/init_server (default build/).

Resumable: a run whose summary.json says "completed" is skipped (unless its sweep_run.json shows
other flags than the manifest now gives); any other existing run directory is moved to
SWEEP_DIR/.attempts/ and the run starts again. A run that fails once started (a crash, a lost
worker, a timeout) is recorded as failed and the sweep continues; so is a run whose training
diverged (status "diverged: ...", counted apart); the exit code is 1 when any run failed or
diverged.

Stopping: SIGINT (Ctrl-C), SIGTERM (kill, timeout, Slurm) and SIGHUP all stop a sweep alike: the
current run's whole process group (run_local.sh, init_server, the clients) gets SIGTERM, then
SIGKILL after 10 s for whatever is left; the run is recorded as "interrupted: ..." in sweep.json and
its sweep_run.json, runs not started stay "pending", and the sweep exits 128 + the signal's number
(130, 143, 129). Running the same command again resumes it (the interrupted run starts again). SWEEP_DIR/sweep.json records the manifest, each run's status and the sweep's provenance
(git revision, host, Python and library versions, command line, seeds); each run directory gets
sweep_run.json (its command, exit code, status, duration).

(Over 400 lines: the manifest format, its check and the resumable runner are one tool.)

Over 400 lines: the manifest, the three ways to start a run (local, --simulate, --cluster) and
resuming share their bookkeeping, which is clearest in one file.
"""
import argparse
import concurrent.futures
import datetime
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The axes every run name spells out, in this order, with their init_server defaults.
AXES = [("psgd", "ssgd", ""), ("codec", "plain", ""), ("node_count", 4, "n"), ("redundancy", 1, "r"),
        ("block_assignment", "iid", ""), ("seed", 1, "s")]
MANIFEST_KEYS = {"name", "description", "grid", "fixed", "flags", "simulate", "emulate", "timeout_s"}
# Keys run_local.sh takes itself: the slow client, and the emulated network (with "emulate").
SCRIPT_KEYS = {"slow_worker"}
NETWORK_KEYS = {"net_bandwidth", "server_bandwidth", "host_bandwidth", "net_latency", "net_mtu"}


class ManifestError(ValueError):
    pass


def load_manifest(path):
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path}: {e}")
    validate(m, path)
    return m


def validate(m, where="manifest"):
    if not isinstance(m, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    unknown = set(m) - MANIFEST_KEYS
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(MANIFEST_KEYS)}")
    if not isinstance(m.get("name"), str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", m["name"]):
        raise ManifestError(f"{where}: 'name' must be a plain name (letters, digits, _ . -)")
    grid = m.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ManifestError(f"{where}: 'grid' must map each flag (or axis of flag objects) to a non-empty list")
    fixed = m.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ManifestError(f"{where}: 'fixed' must be an object of flag values")
    # Where each flag comes from: 'fixed', a plain grid axis, or the objects of one object axis.
    source = {key: "'fixed'" for key in fixed}
    for axis, values in grid.items():
        objects = [v for v in values if isinstance(v, dict)]
        if not objects:
            keys = {axis}
        elif len(objects) != len(values):
            raise ManifestError(f"{where}: grid axis '{axis}' mixes objects of flags with plain values; "
                                "give one or the other")
        elif not all(objects) or not all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for o in objects for k in o):
            raise ManifestError(f"{where}: grid axis '{axis}': each object must name one or more flags "
                                "(lower-case keys such as \"block_assignment\")")
        else:
            keys = {k for o in objects for k in o}
        for key in sorted(keys):
            if key in source:
                raise ManifestError(f"{where}: '{key}' is set by both {source[key]} and grid axis '{axis}'")
            source[key] = f"grid axis '{axis}'"
    reserved = {"output", "working_ports", "port_file", "check"} & set(source)
    if reserved:
        raise ManifestError(f"{where}: {sorted(reserved)} are set by the sweep itself")
    if not isinstance(m.get("flags", []), list):
        raise ManifestError(f"{where}: 'flags' must be a list of strings")
    if "config" in source or any(str(f) == "--config" or str(f).startswith("--config=") for f in m.get("flags", [])):
        raise ManifestError(f"{where}: 'config' (an init_server --config file) cannot be used in a manifest: "
                            "run names, the resume check (a completed run whose flags changed is run again) "
                            "and slow_worker's worker are read from the manifest's own flags, and a --config "
                            "file's settings would bypass them; give its settings in 'fixed' instead")
    if m.get("simulate") and m.get("emulate"):
        raise ManifestError(f"{where}: 'simulate' and 'emulate' exclude each other (the simulator models "
                            "the network itself; give the network keys with either)")


def flag_args(params):
    args = []
    for key, value in params.items():
        if value is True:
            args.append(f"--{key}")
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            args += [f"--{key}", ",".join(str(v) for v in value)]
        else:
            args += [f"--{key}", str(value)]
    return args


def run_name(params, extra):
    """extra: the (key, value) pairs named after the fixed axes, in order."""
    parts = [f"{prefix}{params.get(key, default)}" for key, default, prefix in AXES]
    parts += [f"{key}{value}" for key, value in extra]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def expand(manifest, simulate=None):
    """The runs of a manifest: a list of {"name", "params", "args", "check"} in a stable order (args:
    the command's flags; check: the init_server --check commands that must accept the run). An axis
    whose values are objects contributes each object's keys as flags. simulate: run every point with
    init_server --simulate (default: the manifest's "simulate")."""
    grid = manifest.get("grid", {})
    fixed = manifest.get("fixed", {})
    simulate = manifest.get("simulate") if simulate is None else simulate
    emulate = manifest.get("emulate") and not simulate
    known = [k for k, _, _ in AXES]
    order = [k for k in known if k in grid] + sorted(k for k in grid if k not in known)
    runs = []
    for values in itertools.product(*(grid[k] for k in order)):
        params = dict(fixed)
        extra = []
        for axis, value in zip(order, values):
            chosen = value if isinstance(value, dict) else {axis: value}
            params.update(chosen)
            extra += [(k, v) for k, v in chosen.items() if k not in known]
        raw = list(manifest.get("flags", []))
        job = {k: v for k, v in params.items() if k not in SCRIPT_KEYS}
        if simulate:
            slow = params.get("slow_worker")
            if slow not in (None, 1):
                if "stragglers" in params:
                    raise ManifestError("'slow_worker' and 'stragglers' both slow a worker; give one")
                job["stragglers"] = f"{int(params.get('node_count', 4)) - 1}:x{slow}"
            args = flag_args(job) + raw + ["--simulate"]
            check = [args]
        elif emulate:
            args = ["--emulate"] + flag_args(params) + raw
            net = {k: v for k, v in job.items() if k in NETWORK_KEYS}
            job = {k: v for k, v in job.items() if k not in NETWORK_KEYS}
            # The network's values are checked as the simulator reads them (they mean the same).
            check = [flag_args(job) + raw,
                     flag_args(dict(net, node_count=params.get("node_count", 4))) + ["--simulate"]]
        else:
            args = flag_args(params) + raw
            check = [flag_args(job) + raw]
        runs.append({"name": run_name(params, extra), "params": params, "args": args, "check": check})
    names = [r["name"] for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(f"two runs would be named {twice[0]}; give grid values (or objects) that differ "
                            "in a named flag")
    return runs


def read_json_file(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_summary(run_dir):
    return read_json_file(os.path.join(run_dir, "summary.json"))


def is_completed(run_dir):
    s = read_summary(run_dir)
    return bool(s) and s.get("status") == "completed"


def plan(manifest, sweep_dir, simulate=None):
    """Each run with its state: 'completed' (skipped), 'retry' (a previous attempt, or a completed
    run whose recorded flags differ from the manifest's now) or 'new'."""
    out = []
    for run in expand(manifest, simulate):
        d = os.path.join(sweep_dir, run["name"])
        state = "completed" if is_completed(d) else ("retry" if os.path.exists(d) else "new")
        recorded = read_json_file(os.path.join(d, "sweep_run.json"))
        if state == "completed" and recorded and recorded.get("params") != run["params"]:
            state = "retry"
        out.append(dict(run, dir=d, state=state))
    return out


def git_revision():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(argv):
    libs = {"python": platform.python_version()}
    try:
        import matplotlib

        libs["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    return {
        "psgd_revision": git_revision(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "command_line": " ".join(shlex.quote(a) for a in argv),
        "cwd": os.getcwd(),
        "libraries": libs,
        "started_utc": utc_now(),
    }


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def init_server_path():
    # A relative BUILD_DIR is the repository's (as for scripts/build.sh and run_local.sh).
    return os.path.join(ROOT, os.environ.get("BUILD_DIR") or "build", "experiments", "init_server")


CLUSTER = None  # --cluster F: every run through launch_ssh.sh --cluster F
RESIDENT = False  # --resident: init_server here; the cluster's resident workers (client --serve) join
MANIFEST_DIR = None  # the manifest's directory: relative paths in its flags are read from there


def run_cwd():
    """Where every run (and its init_server --check) starts, so that relative paths in the manifest's
    flags mean the same to both: the manifest's directory; with --cluster (no --resident) the
    repository, where launch_ssh.sh runs init_server (and every host its client) anyway."""
    if CLUSTER and not RESIDENT:
        return ROOT
    return MANIFEST_DIR or os.getcwd()


def command_for(run, simulate):
    if CLUSTER and RESIDENT:
        return [init_server_path()] + run["args"] + ["--cluster", CLUSTER, "--output", run["dir"]]
    if CLUSTER:
        return (["bash", os.path.join(ROOT, "scripts", "launch_ssh.sh"), "--cluster", CLUSTER, "--"]
                + run["args"] + ["--output", run["dir"]])
    if simulate:
        return [init_server_path()] + run["args"] + ["--output", run["dir"]]
    return ["bash", os.path.join(ROOT, "scripts", "run_local.sh")] + run["args"] + ["--output", run["dir"]]


class CheckUnavailable(RuntimeError):
    """init_server cannot check jobs at all (not built, or built before it had --check)."""


def init_server_check(args):
    """init_server --check ARGS: (job, None) when init_server would start a run with these flags,
    else (None, the first line it printed: its reason)."""
    binary = init_server_path()
    try:
        p = subprocess.run([binary, "--check"] + args, cwd=run_cwd(), capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise CheckUnavailable(f"cannot run {binary} ({e.strerror}); build it with scripts/build.sh")
    except subprocess.TimeoutExpired:
        return None, "init_server --check did not answer within 120 s"
    if p.returncode == 0:
        try:
            return json.loads(p.stdout)["job"], None
        except (ValueError, KeyError, TypeError):
            return None, f"{binary} --check printed no job; rebuild it with scripts/build.sh"
    lines = [line.strip() for line in p.stderr.splitlines() if line.strip()]
    return None, lines[0] if lines else f"init_server --check exited with status {p.returncode}"


def refused_runs(runs):
    """[(run, reason)] for every run that init_server --check refuses, in the runs' order. Each run
    is checked with exactly the flags it would be started with (init_server, or run_local.sh, adds
    only where to listen and the port file); run_local.sh's own (slow_worker, the emulated network)
    are left out, the network checked as the simulator reads it."""
    if not runs:
        return []
    _, reason = init_server_check([])
    if reason:
        raise CheckUnavailable(f"{init_server_path()} cannot check jobs ({reason}); rebuild it with scripts/build.sh")
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(
            lambda r: next((reason for c in r["check"]
                            for _, reason in [init_server_check(c + ["--output", r["dir"]])] if reason), None),
            runs))
    return [(run, reason) for run, reason in zip(runs, results) if reason]


def report_refused(manifest_path, name, runs, starting):
    """Checks runs; prints one line per refused run and returns False when any is refused (or
    init_server cannot check). starting: a sweep is about to start these runs."""
    try:
        refused = refused_runs(runs)
    except CheckUnavailable as e:
        print(f"sweep: {e}", file=sys.stderr)
        return False
    for run, reason in refused:
        print(f"sweep: {run['name']}: {reason}", file=sys.stderr)
    if refused:
        print(f"sweep: {name}: init_server refuses {len(refused)} of {len(runs)} runs (above)"
              + (", so the sweep starts none" if starting else "")
              + f"; fix {manifest_path}" + (f" and check it with: scripts/sweep.py --check {manifest_path}"
                                             if starting else ""), file=sys.stderr)
    return not refused


def last_error_line(run_dir, output):
    for name in ("logs/server.err", "logs/sweep.log"):
        try:
            with open(os.path.join(run_dir, name)) as f:
                lines = [l.strip() for l in f if l.strip()]
        except OSError:
            continue
        for line in reversed(lines):
            if "init_server" in line or "error" in line.lower() or "unknown" in line.lower():
                return line
        if lines:
            return lines[-1]
    lines = [l for l in output.splitlines() if l.strip()]
    return lines[-1] if lines else ""


# Stopping the sweep. A run has a session of its own (so a terminal's Ctrl-C reaches only the
# sweep, which then stops the run in order); SIGINT, SIGTERM (Slurm, timeout, kill) and SIGHUP are
# all handled alike: the run's whole process group gets SIGTERM (run_local.sh then removes what it
# made, an emulated LAN's namespaces included), SIGKILL after STOP_GRACE_S for whatever is left, the
# run is recorded as interrupted and the sweep exits 128 + the signal's number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 10.0
STOP = {"signal": None, "deferred": False}  # the first stop signal; deferred: a run is in hand


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_stop_signal(signum, frame):
    if STOP["signal"] is None:
        STOP["signal"] = signum
    if not STOP["deferred"]:
        STOP["deferred"] = True  # raised once; the sweep's own bookkeeping then finishes
        raise Interrupted(signum)


def group_alive(pgid):
    """Whether any process of group pgid is still running (zombies, reaped by their parent, do not
    count)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = None
    if entries is None:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for e in entries:
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_run(proc, grace_s=None):
    """SIGTERM to the run's process group (proc leads it: run_local.sh, init_server, the clients),
    SIGKILL to what is left of it after grace_s; returns proc's exit code once none is left."""
    grace_s = STOP_GRACE_S if grace_s is None else grace_s

    def to_group(sig):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    to_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(proc.pid):
            return proc.returncode
        time.sleep(0.05)
    to_group(signal.SIGKILL)
    rc = proc.wait()
    deadline = time.monotonic() + 5
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return rc


def execute(run, simulate, timeout_s):
    """Runs one point; returns (exit code, status, seconds). A stop signal (STOP) during the run
    stops it (stop_run) and gives the status "interrupted: ..."."""
    os.makedirs(os.path.join(run["dir"], "logs"), exist_ok=True)
    cmd = command_for(run, simulate)
    log_path = os.path.join(run["dir"], "logs", "sweep.log")
    load_before = os.getloadavg()
    start = time.time()
    timed_out = interrupted = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=run_cwd(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if STOP["signal"] is not None:
                rc, interrupted = stop_run(proc), True
                break
            try:
                rc = proc.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    rc, timed_out = stop_run(proc), True
                    break
    seconds = time.time() - start
    summary = read_summary(run["dir"])
    if interrupted and not (summary and summary.get("status") == "completed" and rc == 0):
        status = (f"interrupted: the sweep got {signal.Signals(STOP['signal']).name} after {seconds:.0f} s of "
                  "this run, which was stopped (a resumed sweep runs it again)")
    elif timed_out:
        status = f"failed: timed out after {timeout_s:.0f} s"
    elif summary and summary.get("status"):
        status = summary["status"]
    else:
        with open(log_path) as f:
            status = f"failed: exit {rc}: {last_error_line(run['dir'], f.read())}"
    if status == "completed" and rc != 0:
        status = f"failed: exit {rc} after a completed summary"
    write_json(os.path.join(run["dir"], "sweep_run.json"),
               {"name": run["name"], "params": run["params"], "command": cmd, "exit_code": rc,
                "status": status, "seconds": round(seconds, 3), "finished_utc": utc_now(),
                "load_average": {"start": [round(x, 2) for x in load_before],
                                 "end": [round(x, 2) for x in os.getloadavg()]}})
    return rc, status, seconds


def main(argv=None):
    """Stop signals (STOP_SIGNALS) are handled while main runs, and the previous handlers restored."""
    previous = {sig: signal.signal(sig, on_stop_signal) for sig in STOP_SIGNALS}
    STOP.update(signal=None, deferred=False)
    try:
        return sweep_main(argv)
    except Interrupted as e:
        print(f"sweep: stopped by {e} before any run started", file=sys.stderr)
        return 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sweep_main(argv=None):
    argv = sys.argv if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="See the module docstring (head -90 scripts/sweep.py) for the manifest format, "
                                        "relative paths and stopping (SIGINT/SIGTERM/SIGHUP: the current run "
                                        "is stopped and recorded as interrupted; exit 128 + the signal).")
    ap.add_argument("manifest", help="the manifest (JSON); relative paths in its flags are read from its own "
                                     "directory, where every run starts")
    ap.add_argument("--out", help="sweep directory (default runs/sweeps/<manifest name>; relative paths here and "
                                  "in --cluster are the current directory's)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry_run", action="store_true", help="print what would run, run nothing")
    mode.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    mode.add_argument("--check", action="store_true",
                      help="only check every run with init_server --check (no training): exit 0 when "
                           "init_server accepts them all, else 2 with one line per refused run")
    ap.add_argument("--only", help="run only the runs whose name contains this text")
    ap.add_argument("--timeout_s", type=float, help="per-run timeout (default: the manifest's, else 3600)")
    ap.add_argument("--simulate", action="store_true",
                    help="run every point with init_server --simulate instead (the manifest's network and "
                         "slow_worker as the simulator's flags), into <sweep dir>-simulated by default: the "
                         "simulator's prediction of an emulated or real sweep")
    ap.add_argument("--cluster", metavar="F",
                    help="run every point across the hosts of cluster file F, each run started by "
                         "scripts/launch_ssh.sh --cluster F (ssh per run); a run whose node_count is not "
                         "the file's slots is refused by init_server --check; not with --simulate, "
                         "\"emulate\" or slow_worker")
    ap.add_argument("--resident", action="store_true",
                    help="with --cluster: the cluster's hosts run resident workers (client --serve on the "
                         "file's server address and port, one per slot); each run starts only init_server "
                         "here, with --cluster F, and no ssh")
    args = ap.parse_args(argv[1:])
    global CLUSTER, RESIDENT, MANIFEST_DIR
    CLUSTER = os.path.abspath(args.cluster) if args.cluster else None
    MANIFEST_DIR = os.path.dirname(os.path.abspath(args.manifest))
    RESIDENT = args.resident
    if RESIDENT and not CLUSTER:
        print("sweep: --resident needs --cluster F (the server's address and port the resident workers dial)",
              file=sys.stderr)
        return 2
    try:
        manifest = load_manifest(args.manifest)
        simulate = bool(manifest.get("simulate") or args.simulate)
        default_dir = os.path.join("runs", "sweeps", manifest["name"])
        if args.simulate and not manifest.get("simulate"):
            default_dir += "-simulated"
        sweep_dir = os.path.abspath(args.out or default_dir)
        runs = plan(manifest, sweep_dir, simulate)
        if CLUSTER:
            if simulate or manifest.get("emulate"):
                raise ManifestError("--cluster runs on the cluster's hosts; not with --simulate or \"emulate\"")
            for r in runs:
                if r["params"].get("slow_worker") not in (None, 1):
                    raise ManifestError(f"{r['name']}: slow_worker is run_local.sh's; with --cluster give "
                                        "the client's --slowdown on its host instead")
                r["args"] = r["check"][0]
                r["check"] = [c + ["--cluster", CLUSTER] for c in r["check"]]
    except ManifestError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    if args.only:
        runs = [r for r in runs if args.only in r["name"]]
    if args.check:
        if not report_refused(args.manifest, manifest["name"], runs, starting=False):
            return 2
        n = len(runs)
        print(f"sweep: {manifest['name']}: init_server accepts {'all ' if n > 1 else ''}{n} run{'s' if n != 1 else ''}"
              f"{' (simulated)' if simulate else ''}")
        return 0
    timeout_s = args.timeout_s or manifest.get("timeout_s") or 3600
    todo = [r for r in runs if r["state"] != "completed"]
    print(f"sweep: {manifest['name']}: {len(runs)} runs in {sweep_dir} "
          f"({len(runs) - len(todo)} already completed, {len(todo)} to run"
          f"{', simulated' if simulate else ''})")
    if args.list or args.dry_run:
        for r in runs:
            line = f"  {r['state']:>9}  {r['name']}"
            if args.dry_run and r["state"] != "completed":
                line += "\n             " + " ".join(shlex.quote(a) for a in command_for(r, simulate))
            print(line)
        return 0
    if not report_refused(args.manifest, manifest["name"], todo, starting=True):
        return 2

    os.makedirs(sweep_dir, exist_ok=True)
    shutil.copyfile(args.manifest, os.path.join(sweep_dir, "manifest.json"))
    record_path = os.path.join(sweep_dir, "sweep.json")
    record = {"name": manifest["name"], "description": manifest.get("description", ""),
              "manifest_path": os.path.abspath(args.manifest), "manifest": manifest,
              "simulate": simulate, "emulate": bool(manifest.get("emulate")) and not simulate,
              "provenance": provenance(argv),
              "seeds": sorted({r["params"].get("seed", 1) for r in runs}),
              "runs": [{"name": r["name"], "params": r["params"],
                        "status": "completed" if r["state"] == "completed" else "pending"} for r in runs]}
    write_json(record_path, record)
    failed = diverged = 0
    STOP["deferred"] = True  # from here a stop signal is seen between runs, or stops the current one
    for i, r in enumerate(runs):
        entry = record["runs"][i]
        if STOP["signal"] is not None:
            break
        if r["state"] == "completed":
            entry["skipped"] = True
            continue
        if r["state"] == "retry":
            attempts = os.path.join(sweep_dir, ".attempts")
            os.makedirs(attempts, exist_ok=True)
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            os.replace(r["dir"], os.path.join(attempts, f"{r['name']}-{stamp}"))
        print(f"sweep: [{i + 1}/{len(runs)}] {r['name']}: "
              + " ".join(shlex.quote(a) for a in command_for(r, simulate)), flush=True)
        rc, status, seconds = execute(r, simulate, timeout_s)
        entry.update(status=status, exit_code=rc, seconds=round(seconds, 3))
        if status.startswith("interrupted"):
            write_json(record_path, record)
            print(f"sweep: [{i + 1}/{len(runs)}] {r['name']}: {status}", file=sys.stderr, flush=True)
            break
        if status.startswith("diverged"):
            diverged += 1
        elif status != "completed":
            failed += 1
        summary = read_summary(r["dir"]) or {}
        acc = summary.get("final_test_accuracy")
        print(f"sweep: [{i + 1}/{len(runs)}] {r['name']}: {status}"
              + (f", test accuracy {100 * acc:.2f}%" if acc is not None and status == "completed" else "")
              + f" ({seconds:.1f} s)", flush=True)
        write_json(record_path, record)
    if STOP["signal"] is not None:
        name = signal.Signals(STOP["signal"]).name
        record["provenance"]["interrupted_utc"] = utc_now()
        record["interrupted_by"] = name
        write_json(record_path, record)
        left = sum(1 for e in record["runs"] if e["status"] == "pending")
        print(f"sweep: stopped by {name}; {left} run(s) not started; {record_path} has every run's state; "
              "run the same command again to resume", file=sys.stderr, flush=True)
        return 128 + STOP["signal"]
    record["provenance"]["finished_utc"] = utc_now()
    write_json(record_path, record)
    done = sum(1 for e in record["runs"] if e["status"] == "completed")
    print(f"sweep: {done}/{len(runs)} runs completed, {failed} failed"
          + (f", {diverged} diverged (a loss became NaN or infinite: their status says where)" if diverged else "")
          + f"; report with: scripts/report.py {sweep_dir}")
    return 1 if failed or diverged else 0


if __name__ == "__main__":
    sys.exit(main())
