#!/usr/bin/env bash
# Streaming runtime figures (see docs/BENCHMARKS.md): wordcount over a
# 64 MB generated text in-process at parallelism 1 and 2, on all cores and
# on one core, with the job's peak heap.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
for cpu in 2 1; do
	echo "== GOMAXPROCS=$cpu"
	go test ./flinkrt/examples/wordcount/ -run '^$' -bench 'WordCount' -benchtime "${runs}x" -cpu "$cpu" | grep '^Benchmark'
done
