#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) and prints, per target:
# executions, coverage (libFuzzer's cov: and ft:), the corpus it ended with
# (files, largest input) and crashes. Exits non-zero if any target crashed.
#
#   fuzz/run-all.sh 600            # the final 10-minute runs
#   fuzz/run-all.sh 60 stream_input  # some targets only
#
# Needs a nightly toolchain and cargo-fuzz. The committed seeds
# (fuzz/corpus/<target>, from astral_sim::fuzzing::corpus) are read, not
# written: new inputs go to target/fuzz-corpus/<target> (FUZZ_WORK to move
# it), crashes to fuzz/artifacts/<target>. The schedule targets leave
# nothing out: every crash is a finding.
# No sanitizer by default (FUZZ_SANITIZER=address to change): the code under
# test is safe Rust, and instrumentation would cost most of the executions.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-600}"
shift || true
work="${FUZZ_WORK:-target/fuzz-corpus}"
sanitizer="${FUZZ_SANITIZER:-none}"
max_len=4096

cargo +nightly fuzz build -s "$sanitizer" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "fuzzing ${#targets[@]} targets for ${FUZZ_RUNS:+$FUZZ_RUNS runs (seed ${FUZZ_SEED:-1}) instead of }${secs}s each (max_len $max_len, sanitizer $sanitizer; load: $(uptime | sed 's/.*load average: //'))"
failed=0
for target in "${targets[@]}"; do
  dir="$work/$target"
  log="$work/$target.log"
  mkdir -p "$dir" "artifacts/$target"
  dict=()
  if [ -f "dict/$target.dict" ]; then dict=("-dict=dict/$target.dict"); fi
  before=$(find "artifacts/$target" -type f | wc -l)
  status=0
  # FUZZ_RUNS=<n> runs a fixed number of executions from a fixed seed
  # (FUZZ_SEED, default 1) instead of a time: the same inputs on every run,
  # so a CI smoke run passes or fails the same way each time.
  budget=(-max_total_time="$secs")
  if [ -n "${FUZZ_RUNS:-}" ]; then budget=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}"); fi
  cargo +nightly fuzz run -s "$sanitizer" "$target" "$dir" "corpus/$target" -- \
    "${budget[@]}" -max_len="$max_len" -print_final_stats=1 \
    -rss_limit_mb=4096 -timeout=60 "${dict[@]}" >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n 1)
  status_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$status_line" | awk '{print $2}' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$status_line" | awk '{print $2}' || true)
  files=$(find "$dir" "corpus/$target" -type f | wc -l)
  largest=$(find "$dir" "corpus/$target" -type f -printf '%s\n' | sort -n | tail -n 1)
  after=$(find "artifacts/$target" -type f | wc -l)
  printf '%-20s executions %-9s cov %-6s ft %-7s corpus %s inputs, largest %s bytes; new crashes %s%s\n' \
    "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$files" "${largest:-0}" \
    "$((after - before))" "$([ "$status" -ne 0 ] && echo " (exit $status, see fuzz/$log)")"
  if [ "$status" -ne 0 ]; then
    failed=1
    grep -m 3 -E 'panicked|oracle violation|ERROR' "$log" || true
  fi
done
exit "$failed"
