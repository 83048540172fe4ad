#!/bin/sh
# Packages for the libFuzzer targets in fuzz/ (not needed by the main build): clang and its
# runtime libraries (libFuzzer, ASan, UBSan). Idempotent; run as root.
set -eu
need=""
command -v clang++-14 >/dev/null 2>&1 || need="$need clang-14"
[ -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] ||
  ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
  need="$need libclang-rt-14-dev"
if [ -n "$need" ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y $need
fi
echo "setup_fuzz: clang and libFuzzer are installed"
