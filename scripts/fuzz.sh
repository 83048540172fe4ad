#!/bin/bash
# Builds the libFuzzer targets in fuzz/ with clang (-fsanitize=fuzzer,address,undefined) into
# build-fuzz/, seeds them with valid frames, and runs each for a bounded time with a memory limit,
# so that a crash, a sanitizer report, a leak or an allocation bomb (over -rss_limit_mb /
# -malloc_limit_mb) fails this script.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
# Corpora grow in build-fuzz/corpus/<target>; crashes are saved as build-fuzz/crash-*.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_frame fuzz_message fuzz_payload fuzz_checkpoint fuzz_handshake fuzz_shm
  fuzz_shipping fuzz_dataset fuzz_worker_log)
build=$root/build-fuzz
cxx=$(command -v clang++-14 || command -v clang++ || true)
[ -n "$cxx" ] || { echo "fuzz.sh: no clang++; run scripts/setup_fuzz.sh" >&2; exit 2; }
CXX=$cxx cmake -G Ninja -S "$root/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" -j2
"$build/make_seeds" "$build/seeds"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  echo "fuzz.sh: $t for ${seconds} s"
  if ! (cd "$build" && ./"$t" -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 \
      -max_len=65536 -timeout=10 -print_final_stats=1 "corpus/$t" "seeds/$t" \
      >"$build/$t.log" 2>&1); then
    echo "fuzz.sh: $t FAILED (see $build/$t.log)" >&2
    tail -40 "$build/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$build/$t.log" | tail -3
  fi
done
exit $status
