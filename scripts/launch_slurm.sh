#!/usr/bin/env bash
# One psgd job under Slurm or mpirun: every process runs this script and reads its rank from the
# launcher's environment (SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK; the size from
# SLURM_NTASKS, OMPI_COMM_WORLD_SIZE or PMI_SIZE). Rank 0 runs init_server with
# --node_count = size - 1; every other rank runs a client that connects to rank 0's host.
#
#   srun -N 3 -n 5 scripts/launch_slurm.sh [options] [-- init_server flags...]
#   mpirun -np 5 --host a,b,c scripts/launch_slurm.sh --server a [options] [-- flags...]
#
# Options:
#   --server HOST  rank 0's host name or address (default under Slurm: the first host of
#                  SLURM_JOB_NODELIST, which srun gives rank 0; required under mpirun)
#   --port P       init_server's port (default 55555)
#   --insecure     run without a passphrase: the server listens on every interface and anyone
#                  who can reach its port can join the job or send it data
#   --dry_run      print what this rank would start, start nothing
# The secret: give init_server --passphrase_file F after -- (F readable on every node, mode 0600,
# e.g. in a shared home directory: each client reads the same file) or export $PSGD_PASSPHRASE
# (srun and mpirun -x pass it to every rank's environment); it is never on a command line or in
# the process list. Without a passphrase the launch is refused unless --insecure is given.
# Every rank first runs init_server --check on the flags (and --config); a job whose flags or
# --config name a node_count other than size - 1 is refused (a node_count equal to init_server's
# default, 4, cannot be told from none and is replaced by size - 1).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD_DIR:-build}/experiments
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "launch_slurm: $*" >&2; exit 2; }

server="" port=55555 dry=0 insecure=0
while (($#)); do
  case "$1" in
    --server) server=${2:-}; shift 2 ;;
    --port) port=${2:-}; shift 2 ;;
    --dry_run) dry=1; shift ;;
    --insecure) insecure=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown argument '$1' (init_server flags go after --; see --help)" ;;
  esac
done
flags=("$@")
rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-}}}
size=${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-}}}
[[ -n $rank && -n $size ]] ||
  die "no rank in the environment (SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK); start with srun or mpirun"
[[ $rank =~ ^[0-9]+$ && $size =~ ^[0-9]+$ ]] || die "rank '$rank' / size '$size' are not numbers"
((size >= 2)) || die "need at least 2 processes (a server and a worker), got $size"
((rank < size)) || die "rank $rank is not below size $size"
[[ $port =~ ^[0-9]+$ && $port -ge 1 && $port -le 65535 ]] || die "--port $port: not a port"
for f in "${flags[@]}"; do
  case "$f" in --working_ports*) die "$f is set by this script (--port)" ;; esac
done
if [[ -z $server && -n ${SLURM_JOB_NODELIST:-} ]]; then
  server=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1 || true)
  [[ -n $server ]] || server=${SLURM_JOB_NODELIST%%,*}
fi
[[ -n $server ]] || die "--server HOST is required outside Slurm (rank 0's host)"

# Every rank checks the job (flags and --config, as init_server reads them) before anything starts,
# so that a refused job ends every rank at once instead of leaving clients waiting for a server.
[[ -x $BIN/init_server ]] || die "$BIN/init_server not built on $(hostname); run scripts/build.sh"
source scripts/job_check.sh
job_for_workers launch_slurm "$BIN/init_server" $((size - 1)) "$size processes, rank 0 the server" \
  --working_ports "$port" "${flags[@]}" || exit 2
[[ ${job[4]} == no ]] || die "--simulate runs every worker inside init_server; run it directly, as one process"
secret_file=${job[5]}
client_secret=()
if [[ -n $secret_file ]]; then
  [[ -r $secret_file ]] || die "cannot read the passphrase file $secret_file on $(hostname)"
  client_secret=(--passphrase_file "$secret_file")  # a path, not the secret
elif [[ -z ${PSGD_PASSPHRASE:-} ]]; then
  ((insecure)) || die "no passphrase: workers on other nodes would join unauthenticated; give init_server --passphrase_file F after -- (or export \$PSGD_PASSPHRASE), or --insecure to run without one"
  # Without a passphrase init_server would listen on loopback only.
  has_bind=0
  for f in "${server_flags[@]}"; do [[ $f == --bind* ]] && has_bind=1; done
  ((has_bind)) || server_flags+=(--bind 0.0.0.0)
  ((rank == 0)) && echo "launch_slurm: --insecure: no passphrase, so anyone who can reach port $port can join this job or send it data" >&2
fi
if ((rank == 0)); then
  cmd=("$BIN/init_server" "${server_flags[@]}")
else
  cmd=("$BIN/client" --ip "$server" --port "$port" --connect_timeout 120 "${client_secret[@]}")
fi
echo "launch_slurm: rank $rank of $size on $(hostname): ${cmd[*]}" >&2
((dry)) && exit 0
[[ -x ${cmd[0]} ]] || die "${cmd[0]} not built on $(hostname); run scripts/build.sh"
exec "${cmd[@]}"
