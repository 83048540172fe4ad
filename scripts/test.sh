#!/usr/bin/env bash
# The second command of the README (and what CI runs): install what is missing, build, and run
# every test under ctest. Extra arguments go to ctest, e.g. scripts/test.sh -L integration
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup_sshd.sh  # a real sshd for tests/python/sshd_test.py, installed without starting it
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest -j 2 --output-on-failure --timeout 600 "$@"
