#!/usr/bin/env bash
# Nexmark (see docs/BENCHMARKS.md): every query over EVENTS generated
# events (Nexmark's default generator, 10M events/s of event time),
# results dropped, at parallelism 2:
# 1. in-process (`bin/examples/nexmark` run directly), and the generator alone
#    (--query gen), whose rate is the ceiling of every query;
# 2. on a standalone JobManager with two TaskManagers of one slot each,
#    from the job's duration as the JobManager measures it.
# Prints events/s and events/s per core (this VM's cores).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${EVENTS:-10000000}
queries=${QUERIES:-"gen q0 q1 q2 q3 q4 q5 q7 q8"}
cores=$(nproc)
make -s build
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

echo "== in-process, parallelism 2, $events events, $cores cores"
for q in $queries; do
	line=$(LOOM_PARALLELISM=2 bin/examples/nexmark --query "$q" --events "$events" --discard 2>&1 >/dev/null | grep 'events/s')
	rate=$(echo "$line" | sed -n 's/.*: \([0-9]*\) events\/s$/\1/p')
	awk -v q="$q" -v r="$rate" -v c="$cores" 'BEGIN { printf "%-4s %10.0f events/s  %9.0f events/s per core\n", q, r, r/c }'
done

. scripts/standalone.sh
start_standalone "$dir"
echo "== standalone, 2 TaskManagers of 1 slot, parallelism 2, $events events"
for q in $queries; do
	out=$(bin/loom run -t remote --jobmanager "$jm" -p 2 bin/examples/nexmark --query "$q" --events "$events" --discard)
	d=$(echo "$out" | sed -n 's/.*FINISHED after \(.*\)$/\1/p')
	secs=$(awk -v d="$d" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print d/1000 } else { sub(/s$/, "", d); print d } }')
	awk -v q="$q" -v e="$events" -v s="$secs" -v c="$cores" 'BEGIN { printf "%-4s %10.0f events/s  %9.0f events/s per core (%.2fs)\n", q, e/s, e/s/c, s }'
done
