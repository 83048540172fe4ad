#!/usr/bin/env bash
# One psgd job over ssh: init_server here (or on --server), clients on a list of hosts.
#
#   scripts/launch_ssh.sh --hosts h1,h2,... [options] [-- init_server flags...]
#   scripts/launch_ssh.sh --host_prefix 192.168.1. --first 10 --last 17 [options] [-- flags...]
#   scripts/launch_ssh.sh --cluster cluster.json [options] [-- init_server flags...]
#
# Options:
#   --cluster F       a cluster file (README "Running on several machines"): the worker hosts and
#                     their slots, ssh users and datasets, the server's address and port and the
#                     passphrase file; init_server gets --cluster F too (config.json records it).
#                     Not with --hosts, --host_prefix, --per_host, --server_ip or --port
#   --per_host K      clients per host (default 1); --node_count is hosts x K
#   --nodes N1,N2,..  one job per node count, one after the other, each on the first N slots of the
#                     host list (hosts in order, --per_host each) with its own run directory
#                     (init_server's --output D gives D-n<N>, else runs/<time>-ssh-n<N>); every
#                     job's plan is checked before the first starts; exits 1 if any job failed.
#                     Not with --cluster (its slots fix the node count)
#   --server HOST     run init_server on HOST over ssh (default: on this machine)
#   --server_ip IP    the address clients connect to (default: --server without its user@, or
#                     this machine's first address from `hostname -I`)
#   --port P          the server's port (default 55555)
#   --repo DIR        the psgd checkout on every host (default: this one's path)
#   --ssh CMD         the ssh command (default: "ssh -o BatchMode=yes"; split at spaces)
#   --ssh_port P      the port of sshd on every host (ssh -p P; default: ssh's own: 22, or what
#                     ~/.ssh/config says)
#   --ssh_identity F  the private key to log in with (ssh -i F -o IdentitiesOnly=yes)
#   --ssh_known_hosts F  the hosts' public keys (ssh -o UserKnownHostsFile=F), checked strictly: a
#                     host not in F, or with another key, is refused (StrictHostKeyChecking=yes)
#                     With --cluster these three come from the file's "ssh" object (port,
#                     identity_file, known_hosts; a relative path there is taken from the file's
#                     directory) and are refused as flags. A relative path given as a flag is taken
#                     from the directory this script was started in; ~/ is your home directory.
#   --insecure        run without a passphrase: the server listens on every interface and anyone
#                     who can reach its port can join the job or send it data
#   --dry_run         print every command and start nothing
# The secret: give init_server --passphrase_file F after -- (or set $PSGD_PASSPHRASE here); every
# client (and a --server on another host) gets the passphrase on its standard input over ssh
# (client --passphrase_file -), never on a command line, in the process list or in a file on
# the worker hosts. Without a passphrase the launch is refused unless --insecure is given.
# Every host needs the same build in --repo and the dataset; clients retry connecting for 30 s, so
# start order does not matter. Client logs: <run dir>/logs/ssh-<host>-<k>.log on this machine.
# The build: every host (the server's too) runs $BUILD_DIR/experiments/ (the environment variable,
# as for scripts/build.sh; default build), so BUILD_DIR=build-asan scripts/launch_ssh.sh ... runs
# the sanitizer build everywhere. A relative BUILD_DIR is taken from --repo on each host (and
# from this checkout for the check below), an absolute one as it is: the same path on every host.
# Before anything starts, this machine's init_server --check validates the server's flags (and
# --config) and says the job's output directory; a job whose flags or --config name a node_count
# other than hosts x per_host is refused (a node_count equal to init_server's default, 4, cannot
# be told from none and is replaced by hosts x per_host).
set -euo pipefail
export LAUNCH_SSH_START_DIR=${LAUNCH_SSH_START_DIR:-$PWD}  # relative paths are taken from here
start_dir=$LAUNCH_SSH_START_DIR
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
BIN=$build_dir/experiments
# The comment block at the top, up to the first line that is not a comment.
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "launch_ssh: $*" >&2; exit 2; }

hosts="" prefix="" first="" last="" per_host=1 server="" server_ip="" port=55555 repo=$PWD
ssh_cmd="ssh -o BatchMode=yes" dry=0 insecure=0 cluster="" node_list=""
ssh_port="" ssh_identity="" ssh_known_hosts=""
all_args=("$@")
while (($#)); do
  case "$1" in
    --nodes) node_list=${2:-}; shift 2 ;;
    --hosts) hosts=${2:-}; shift 2 ;;
    --cluster) cluster=${2:-}; shift 2 ;;
    --per_host) per_host=${2:-}; shift 2 ;;
    --server_ip) server_ip=${2:-}; shift 2 ;;
    --port) port=${2:-}; shift 2 ;;
    --host_prefix) prefix=${2:-}; shift 2 ;;
    --first) first=${2:-}; shift 2 ;;
    --last) last=${2:-}; shift 2 ;;
    --server) server=${2:-}; shift 2 ;;
    --repo) repo=${2:-}; shift 2 ;;
    --ssh) ssh_cmd=${2:-}; shift 2 ;;
    --ssh_port) ssh_port=${2:-}; shift 2 ;;
    --ssh_identity) ssh_identity=${2:-}; shift 2 ;;
    --ssh_known_hosts) ssh_known_hosts=${2:-}; shift 2 ;;
    --dry_run) dry=1; shift ;;
    --insecure) insecure=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown argument '$1' (init_server flags go after --; see --help)" ;;
  esac
done
flags=("$@")
if [[ -n $node_list ]]; then
  # One job per node count: this script again for each, told how many slots to take.
  [[ -z $cluster ]] || die "--nodes with --cluster: the cluster file's slots fix the node count; give --hosts or --host_prefix"
  [[ $node_list =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--nodes $node_list: give node counts like 2,4,8"
  base="" job_flags=() skip=0  # init_server's flags without --output: each job gets its own
  for f in "${flags[@]}"; do
    if ((skip)); then skip=0; base=$f; continue; fi
    case "$f" in
      --output) skip=1 ;;
      --output=*) base=${f#--output=} ;;
      *) job_flags+=("$f") ;;
    esac
  done
  out_of() { [[ -n $base ]] && printf '%s\n' --output "$base-n$1"; }
  rest=() skip=0  # this script's own options, without --nodes
  for a in "${all_args[@]}"; do
    [[ $a == -- ]] && break
    if ((skip)); then skip=0; continue; fi
    if [[ $a == --nodes ]]; then skip=1; continue; fi
    rest+=("$a")
  done
  IFS=, read -r -a counts <<<"$node_list"
  for n in "${counts[@]}"; do ((n >= 1)) || die "--nodes $node_list: every count must be at least 1"; done
  # Every job's plan is checked before the first starts (a count beyond the hosts' slots, a
  # refused flag).
  for n in "${counts[@]}"; do
    ((dry)) && break
    mapfile -t o < <(out_of "$n")
    LAUNCH_SSH_TAKE=$n bash "$0" "${rest[@]}" --dry_run -- "${job_flags[@]}" "${o[@]}" >/dev/null || exit 2
  done
  failed=()
  for n in "${counts[@]}"; do
    echo "launch_ssh: --nodes: the job with $n workers"
    mapfile -t o < <(out_of "$n")
    LAUNCH_SSH_TAKE=$n bash "$0" "${rest[@]}" -- "${job_flags[@]}" "${o[@]}" || { rc=$?; ((rc == 2)) && exit 2; failed+=("$n"); }
  done
  ((${#failed[@]} == 0)) || { echo "launch_ssh: --nodes: the jobs with ${failed[*]} workers failed" >&2; exit 1; }
  exit 0
fi
# A path as given (relative to directory $2, ~/ for the home directory) made absolute.
absolute() {
  local f=$1
  [[ -z $f ]] && return 0
  # shellcheck disable=SC2088  # a literal ~/ (from a file or a quoted flag) is the home directory
  [[ $f == "~/"* ]] && f=$HOME/${f#"~/"}
  [[ $f == /* ]] || f=$2/$f
  printf '%s' "$f"
}
[[ -z $cluster ]] || cluster=$(absolute "$cluster" "$start_dir")
list=() datasets=()
if [[ -n $hosts && -n $prefix ]]; then die "give --hosts or --host_prefix/--first/--last, not both"; fi
if [[ -n $cluster ]]; then
  [[ -z $hosts && -z $prefix && $per_host == 1 && -z $server_ip && $port == 55555 ]] ||
    die "--cluster gives the hosts, the server's address and port; not with --hosts, --host_prefix, --per_host, --server_ip or --port"
  [[ -z $ssh_port && -z $ssh_identity && -z $ssh_known_hosts ]] ||
    die "--cluster gives the ssh options in its \"ssh\" object (port, identity_file, known_hosts); not with --ssh_port, --ssh_identity or --ssh_known_hosts"
  # The server's address and port, the "ssh" object's port, identity_file and known_hosts (a line
  # each, empty when not given), then one line per client (ssh target, its --dataset or -);
  # init_server --check below checks the whole file.
  mapfile -t entries < <(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(c["server"]["address"], c["server"].get("port", 55555))
ssh = c.get("ssh", {})
for key in ("port", "identity_file", "known_hosts"):
    print(ssh.get(key, ""))
for w in c["workers"]:
    target = (w["user"] + "@" if w.get("user") else "") + w["host"]
    for _ in range(w.get("slots", 1)):
        print(target, w.get("dataset", "-"))' "$cluster" 2>/dev/null) ||
    die "--cluster $cluster: not a cluster file (init_server --check --cluster $cluster says why)"
  ((${#entries[@]} >= 5)) || die "--cluster $cluster: no workers"
  read -r server_ip port <<<"${entries[0]}"
  ssh_port=${entries[1]}
  ssh_identity=$(absolute "${entries[2]}" "$(dirname "$cluster")")
  ssh_known_hosts=$(absolute "${entries[3]}" "$(dirname "$cluster")")
  for e in "${entries[@]:4}"; do
    read -r target dataset <<<"$e"
    list+=("$target")
    datasets+=("$dataset")
  done
  flags+=(--cluster "$cluster")
elif [[ -n $hosts ]]; then
  IFS=, read -r -a list <<< "$hosts"
elif [[ -n $prefix ]]; then
  [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ ]] || die "--host_prefix needs numeric --first and --last"
  ((first <= last)) || die "--first $first is after --last $last"
  for ((i = first; i <= last; i++)); do list+=("$prefix$i"); done
else
  die "give the worker hosts: --hosts h1,h2 or --host_prefix P --first A --last B"
fi
for h in "${list[@]}"; do [[ -n $h && $h != *" "* ]] || die "empty or malformed host in the list"; done
# The ssh command, as words, and the options for the hosts' sshd.
read -r -a ssh_argv <<<"$ssh_cmd"
((${#ssh_argv[@]})) || die "--ssh: give an ssh command"
ssh_extra=()
if [[ -n $ssh_port ]]; then
  if [[ ! $ssh_port =~ ^[0-9]+$ ]] || ((ssh_port < 1 || ssh_port > 65535)); then
    die "ssh port $ssh_port: not a port"
  fi
  ssh_extra+=(-p "$ssh_port")
fi
if [[ -n $ssh_identity ]]; then
  [[ $cluster ]] || ssh_identity=$(absolute "$ssh_identity" "$start_dir")
  [[ -f $ssh_identity && -r $ssh_identity ]] || die "cannot read the ssh key $ssh_identity"
  ssh_extra+=(-i "$ssh_identity" -o IdentitiesOnly=yes)
fi
if [[ -n $ssh_known_hosts ]]; then
  [[ $cluster ]] || ssh_known_hosts=$(absolute "$ssh_known_hosts" "$start_dir")
  [[ -f $ssh_known_hosts && -r $ssh_known_hosts ]] || die "cannot read the known_hosts file $ssh_known_hosts"
  [[ $ssh_known_hosts != *[[:space:]]* ]] || die "the known_hosts file's path $ssh_known_hosts has a space, which ssh cannot take; move it"
  ssh_extra+=(-o "UserKnownHostsFile=$ssh_known_hosts" -o StrictHostKeyChecking=yes)
fi
ssh_argv+=("${ssh_extra[@]}")
ssh_shown=$ssh_cmd
((${#ssh_extra[@]})) && ssh_shown+=" $(printf '%q ' "${ssh_extra[@]}")" && ssh_shown=${ssh_shown% }
[[ $per_host =~ ^[0-9]+$ && $per_host -ge 1 ]] || die "--per_host must be a positive number"
[[ $port =~ ^[0-9]+$ && $port -ge 1 && $port -le 65535 ]] || die "--port $port: not a port"
for f in "${flags[@]}"; do
  case "$f" in --working_ports*) die "$f is set by this script (--port)" ;; esac
done
# Every client: its ssh target and --dataset (- : the job's own).
targets=() client_data=()
for i in "${!list[@]}"; do
  for ((k = 0; k < per_host; k++)); do
    targets+=("${list[i]}")
    client_data+=("${datasets[i]:--}")
  done
done
nodes=${#targets[@]}
if [[ -n ${LAUNCH_SSH_TAKE:-} ]]; then  # --nodes: this job takes the first N slots
  ((LAUNCH_SSH_TAKE <= nodes)) || die "--nodes: $LAUNCH_SSH_TAKE workers, but the hosts give only $nodes slot(s)"
  nodes=$LAUNCH_SSH_TAKE
  targets=("${targets[@]:0:nodes}")
  client_data=("${client_data[@]:0:nodes}")
fi
if [[ -z $server_ip ]]; then
  if [[ -n $server ]]; then server_ip=${server#*@}; else server_ip=$(hostname -I 2>/dev/null | awk '{print $1}'); fi
  [[ -n $server_ip ]] || die "cannot tell this machine's address; give --server_ip"
fi

# The job, as init_server reads the flags (and --config), checked here before anything starts (every
# host runs the same build).
[[ -x $BIN/init_server ]] ||
  die "$BIN/init_server is not built on this machine; it checks the job before anything starts (scripts/build.sh)"
source scripts/job_check.sh
job_for_workers launch_ssh "$BIN/init_server" "$nodes" "${#list[@]} host(s) x $per_host" \
  --working_ports "$port" "${flags[@]}" || exit 2
[[ ${job[4]} == no ]] || die "--simulate runs every worker inside init_server; run it directly, without hosts"
flags=("${server_flags[@]}")
out=${job[3]}
secret_file=${job[5]}
# The secret: a file named by the flags or --config, else $PSGD_PASSPHRASE; each ssh gets it on
# stdin (secret_in), the remote process reads it with --passphrase_file -.
if [[ -n $secret_file ]]; then
  [[ -r $secret_file ]] || die "cannot read the passphrase file $secret_file"
  mode=$(stat -c %a "$secret_file")
  [[ $mode == ?00 ]] || echo "launch_ssh: warning: $secret_file is readable by others (mode $mode); chmod 600 it" >&2
  secret_in() { head -n 1 "$secret_file"; }
elif [[ -n ${PSGD_PASSPHRASE:-} ]]; then
  secret_in() { printf '%s\n' "$PSGD_PASSPHRASE"; }
elif ((insecure)); then
  secret_in() { :; }
else
  die "no passphrase: workers on other hosts would join unauthenticated; give init_server --passphrase_file F after -- (or set \$PSGD_PASSPHRASE), or --insecure to run without one"
fi
has_bind=0
for f in "${flags[@]}"; do [[ $f == --bind* ]] && has_bind=1; done
if [[ -z $secret_file && -z ${PSGD_PASSPHRASE:-} ]]; then
  # Without a passphrase init_server would listen on loopback only.
  ((has_bind)) || flags+=(--bind 0.0.0.0)
  echo "launch_ssh: --insecure: no passphrase, so anyone who can reach port $port can join this job or send it data" >&2
  client_secret=()
else
  client_secret=(--passphrase_file -)
fi
# A server on another host reads the passphrase from stdin as well (a flag on the command line
# wins over --config's passphrase_file).
remote_flags=()
skip=0
for f in "${flags[@]}"; do
  if ((skip)); then skip=0; continue; fi
  case "$f" in
    --passphrase_file) skip=1 ;;
    --passphrase_file=*) ;;
    *) remote_flags+=("$f") ;;
  esac
done
remote_flags+=("${client_secret[@]}")
if [[ -z $out ]]; then
  out="runs/$(date -u +%Y%m%d-%H%M%S)-ssh-n$nodes"
  flags+=(--output "$out")
fi

q() { printf '%q ' "$@"; }
# Every host runs $BUILD_DIR's binaries (relative: from --repo there), as this machine's check did.
remote_bin=$(printf '%q' "$build_dir")/experiments
server_line="cd $(q "$repo") && $remote_bin/init_server $(q "${flags[@]}")"
remote_server_line="cd $(q "$repo") && $remote_bin/init_server $(q "${remote_flags[@]}")"
client_line="cd $(q "$repo") && $remote_bin/client --ip $server_ip --port $port"
((${#client_secret[@]})) && client_line+=" --passphrase_file -"
stdin_note=""
((${#client_secret[@]})) && stdin_note=" (passphrase on stdin)"
client_command() {  # client_command I: the remote command of client I
  local line=$client_line
  [[ ${client_data[$1]} == - ]] || line+=" --dataset $(printf '%q' "${client_data[$1]}")"
  printf '%s' "$line"
}
echo "launch_ssh: $nodes workers on ${#list[@]} host(s) x $per_host${LAUNCH_SSH_TAKE:+ (the first $nodes slots)}; server ${server:-this machine} ($server_ip:$port); run directory $out"
if [[ -n $server ]]; then
  echo "  server: $ssh_shown $server '$remote_server_line'$stdin_note"
else
  echo "  server: $server_line"
fi
for i in "${!targets[@]}"; do
  echo "  client: $ssh_shown ${targets[i]} '$(client_command "$i")'$stdin_note"
done
((dry)) && exit 0

mkdir -p "$out/logs"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n $server ]]; then
  secret_in | "${ssh_argv[@]}" "$server" "$remote_server_line" > "$out/logs/server.log" 2>&1 &
else
  bash -c "$server_line" > "$out/logs/server.log" 2>&1 &
fi
server_pid=$!
pids+=("$server_pid")
declare -A seen=()
for i in "${!targets[@]}"; do
  h=${targets[i]}
  k=${seen[$h]:-0}
  seen[$h]=$((k + 1))
  secret_in | "${ssh_argv[@]}" "$h" "$(client_command "$i")" > "$out/logs/ssh-$h-$k.log" 2>&1 &
  pids+=("$!")
done
rc=0
wait "$server_pid" || rc=$?
tail -n 2 "$out/logs/server.log"
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
pids=()
exit $rc
