#!/usr/bin/env bash
# User-mode instructions per call on the client's thread, for each variant of the `sdk` bench,
# counted by valgrind's callgrind: exact and repeatable where CPU time on a VM is not. Each
# variant runs alone twice (5 and 15 rounds of 200 calls); the difference over the 2,000 extra
# calls leaves set-up out (the bench's own clock and rusage reads per call are in every variant). Needs valgrind (`apt-get install -y valgrind`).
#
#   bash client-sdk/benches/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bench=$(cargo bench -p msakit --bench sdk --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
names=("plain reqwest" "plain reqwest, 2nd client" "reqwest + tokio timeout" "reqwest + msakit timeout" "the SDK's request, no SDK logic" "msakit ServiceClient")
declare -a per_call
for variant in 0 1 2 3 4 5; do
  for rounds in 5 15; do
    SDK_BENCH_ONLY=$variant SDK_BENCH_ROUNDS=$rounds valgrind --tool=callgrind \
      --separate-threads=yes --callgrind-out-file="$out/cg.$variant.$rounds" "$bench" \
      >/dev/null 2>&1
  done
  # Thread 1 is the client (the bench's main thread drives the client's runtime).
  short=$(sed -n 's/^summary: //p' "$out/cg.$variant.5-01")
  long=$(sed -n 's/^summary: //p' "$out/cg.$variant.15-01")
  per_call[variant]=$(( (long - short) / 2000 ))
done
echo "| | instructions per call (client thread, user mode) | vs plain |"
echo "|---|---:|---:|"
for variant in 0 1 2 3 4 5; do
  echo "| ${names[variant]} | ${per_call[variant]} | $(( per_call[variant] - per_call[0] )) |"
done
