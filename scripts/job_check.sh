# shellcheck shell=bash
# Sourced by run_local.sh, launch_ssh.sh and launch_slurm.sh (not run by itself): what job a set of
# init_server flags makes, as init_server itself reads them (flags over --config over defaults).
#
#   job_of INIT_SERVER [flags...]
#
# runs `INIT_SERVER --check flags...` (it validates exactly as a run would and loads no data) and
# sets the array `job` to: node_count psgd codec output simulate (yes|no) passphrase_file (empty
# when none) allreduce_backend. When init_server refuses the flags, its reason is already on stderr and job_of
# returns 2.
job_of() {
  local bin=$1 json
  shift
  json=$("$bin" --check "$@") || return 2
  mapfile -t job < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
j = d["job"]
for v in (j["node_count"], j["psgd"], j["codec"], j["output"], "yes" if d["simulate"] else "no",
          d["server"]["passphrase_file"], j["allreduce_backend"]):
    print(v)' "$json" 2>/dev/null)
  if ((${#job[@]} != 7)); then
    echo "$bin --check printed no job; rebuild it with scripts/build.sh" >&2
    return 2
  fi
}

# job_for_workers ME INIT_SERVER N WHAT [flags...]: for a launcher whose workers are fixed (N of
# them, WHAT says why, e.g. "2 host(s) x 1"): sets `server_flags` to the flags init_server gets
# (--node_count N, then the flags) and `job` to the job they make. A job whose flags or --config
# name another node_count is refused; one equal to init_server's default cannot be told from none
# and is replaced, as is any when the flags alone are refused (say, gc's redundancy does not
# divide the default node_count): the command with N decides then. Returns 2 after saying why
# (prefixed ME) when init_server refuses the command or the counts differ.
job_for_workers() {
  local me=$1 bin=$2 n=$3 what=$4 asked named=0
  shift 4
  if job_of "$bin" "$@" 2>/dev/null; then
    asked=${job[0]}
    if ((asked == n)); then
      named=1
    else
      job_of "$bin" || return 2
      if ((asked != job[0])); then
        echo "$me: the job asks for node_count $asked (its flags or --config), but this launch has $n workers ($what)" >&2
        return 2
      fi
    fi
  fi
  server_flags=(--node_count "$n" "$@")
  # With N already in the job, a refusal can only be of --node_count itself (given twice, or with
  # --resume, whose job is in its run directory): leave it out then.
  if ((named)) && ! job_of "$bin" "${server_flags[@]}" 2>/dev/null; then server_flags=("$@"); fi
  if ! job_of "$bin" "${server_flags[@]}"; then
    echo "$me: init_server refuses the server's command (above): init_server ${server_flags[*]}" >&2
    return 2
  fi
}
