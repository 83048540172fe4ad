#!/usr/bin/env bash
# Configure and build psgd into build/ (Release with debug info, Ninja). Extra arguments go to
# CMake, e.g. scripts/build.sh -DPSGD_SANITIZE=ON. BUILD_DIR overrides the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# ccache, when installed, makes rebuilds in other checkouts (git worktrees) cheap; never required.
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [[ ! -f "$BUILD_DIR/build.ninja" || $# -gt 0 ]]; then
  cmake -G Ninja -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" "$@" >/dev/null
fi
# Two jobs: a torch translation unit needs ~1.5 GB and the machines this runs on have 2 cores.
cmake --build "$BUILD_DIR" -j "${PSGD_JOBS:-2}"
