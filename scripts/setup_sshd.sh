#!/usr/bin/env bash
# Installs Debian's OpenSSH server (openssh-server) for the one test that needs a real sshd
# (tests/python/sshd_test.py: scripts/launch_ssh.sh against sshd running inside network namespaces
# the test builds). Nothing else in psgd uses it. Idempotent; called by scripts/test.sh (and so by
# CI); needs root (or sudo). Skipped with one line, and nothing installed, when PSGD_NO_SSHD=1.
#
# Installing the package must not leave an sshd listening on this machine: the test starts its own
# sshd, on a port of its own, only inside namespaces it made, and a developer's or CI's machine
# should not gain a login service as a side effect of running the tests. Debian's postinst starts
# the ssh service through invoke-rc.d (or deb-systemd-invoke), and both ask /usr/sbin/policy-rc.d
# first: exit status 101 means "do not start services". So for the install this script puts a
# policy-rc.d that exits 101 in place (unless one is there already, as in Docker images, which have
# exactly that one: it is left alone) and removes it afterwards, whatever happens. This was chosen
# over "stop and disable after the install" because the service never starts at all: nothing
# listens on port 22, not even for a moment. On a systemd machine the postinst still enables the
# unit for the next boot, so when this script installed the package it also disables ssh.service
# and ssh.socket (a machine that had openssh-server before keeps its own settings).
set -euo pipefail

if [[ ${PSGD_NO_SSHD:-} == 1 ]]; then
  echo "setup_sshd: PSGD_NO_SSHD=1: not installing openssh-server (tests/python/sshd_test.py will skip)"
  exit 0
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if installed openssh-server && installed openssh-client; then
  echo "setup_sshd: openssh-server present"
  exit 0
fi
had_server=0
installed openssh-server && had_server=1
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup_sshd: not root and no sudo; install openssh-server by hand (see this script's top)" >&2
    exit 1
  fi
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
restore() { if ((made_policy)); then $SUDO rm -f "$policy"; fi; }
trap restore EXIT
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# Put here by psgd scripts/setup_sshd.sh during an install; removed after it.\nexit 101\n' |
    $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
echo "setup_sshd: installing openssh-server (its service is not started: $policy exits 101)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client
if ((!had_server)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  $SUDO systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
fi
echo "setup_sshd: done (no sshd runs; the test starts its own inside its namespaces)"
