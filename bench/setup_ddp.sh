#!/usr/bin/env bash
# Benchmark-only setup (not part of scripts/setup.sh): Debian's python3-torch (PyTorch 1.13 with
# Gloo; ~1 GB with its dependencies) and numpy, for bench/ddp/ddp_mlp.py, the PyTorch DDP side of
# bench/ddp_compare.py. Idempotent: does nothing when both are installed.
set -euo pipefail
missing=()
for pkg in python3-torch python3-numpy; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "setup_ddp: python3-torch and python3-numpy present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup_ddp: not root and no sudo; install ${missing[*]} by hand" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup_ddp: done"
