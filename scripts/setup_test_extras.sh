#!/usr/bin/env bash
# Optional test-only extras (not part of scripts/setup.sh): Debian's python3-torch, so that the
# test that loads a run's state_dict.pt in Python PyTorch runs instead of skipping. ~1 GB with its
# dependencies; the main setup does not need it. Idempotent.
set -euo pipefail
if dpkg-query -W -f='${Status}' python3-torch 2>/dev/null | grep -q "install ok installed"; then
  echo "setup_test_extras: python3-torch present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup_test_extras: not root and no sudo; install python3-torch by hand" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq --no-install-recommends python3-torch
echo "setup_test_extras: done"
