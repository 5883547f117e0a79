#!/usr/bin/env bash
# Instructions per route pick, counted by callgrind (valgrind): repeatable
# where wall-clock benchmarks on a shared machine are not.
#   scripts/pick-instructions.sh            # needs valgrind (apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
bin=$(cargo bench --bench pick_instructions --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*pick_instructions[^"]*"' | tail -1 | cut -d'"' -f4 || true)
[ -x "$bin" ] || { echo "could not build the pick_instructions bench" >&2; exit 1; }
n=200000
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 | grep -oE 'Collected : [0-9]+' | grep -oE '[0-9]+'; }
for mode in sync async; do
  base=$(count "$mode" 0)
  with=$(count "$mode" "$n")
  echo "$mode: $(( (with - base) / n )) instructions per pick ($n picks, callgrind)"
done
