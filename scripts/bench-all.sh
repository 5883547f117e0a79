#!/usr/bin/env bash
# Regenerates every benchmark figure in BENCHMARKS.md, and the plot.
#   scripts/bench-all.sh      (7 min 17 s on 2 cores at 078aac0; outputs in
#                             $CARGO_TARGET_DIR/bench/, by default target/bench/)
# Needs redis-server; for the baselines also etcd-server, nginx-light, wrk,
# and valgrind (apt-get install -y redis-server etcd-server nginx-light wrk valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
out=$target/bench
mkdir -p "$out"
for bench in pick refresh propagation drivers memory registry_load; do
  echo "== cargo bench --bench $bench"
  cargo bench --bench "$bench" 2>&1 | tee "$out/$bench.txt"
done
echo "== scripts/pick-instructions.sh"
scripts/pick-instructions.sh | tee "$out/pick_instructions.txt"
echo "== scripts/router-vs-nginx.sh"
scripts/router-vs-nginx.sh | tee "$out/router.txt"
CARGO_TARGET_DIR=$target python3 scripts/plot.py "$out" docs/benchmarks.svg
