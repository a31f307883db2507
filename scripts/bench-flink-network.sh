#!/usr/bin/env bash
# The streaming runtime's network path (see docs/BENCHMARKS.md): wordcount
# over a 64 MB generated text on a standalone JobManager with two
# TaskManager processes of one slot each, at parallelism 2, so each
# worker's counts take half their words from the other worker over TCP.
# Prints words/s from the job's duration (submit to FINISHED as the
# JobManager measures it) and each worker's peak resident memory; then the
# channel benchmark: bytes/s of records between two ends over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
size=${SIZE:-67108864}
make -s build
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
words=$(go run ./scripts/gentext --size "$size" --out "$dir/text.txt")
. scripts/standalone.sh
start_standalone "$dir"
echo "== wordcount across two TaskManagers, p=2, $words words"
for r in $(seq "$runs"); do
	out=$(bin/loom run -t remote --jobmanager "$jm" -p 2 bin/examples/wordcount --input "$dir/text.txt" --discard)
	ms=$(echo "$out" | sed -n 's/.*FINISHED after \(.*\)$/\1/p')
	secs=$(awk -v d="$ms" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print d/1000 } else { sub(/s$/, "", d); print d } }')
	awk -v w="$words" -v s="$secs" -v r="$r" 'BEGIN { printf "run %d: %.2fs, %.2fM words/s\n", r, s, w/s/1e6 }'
done
sleep 0.5
echo "peak RSS of the workers (MiB):" $(grep -h 'job worker exited' "$dir"/tm*.log | sed -n 's/.*peak_rss_mib=\([0-9]*\).*/\1/p' | tr '\n' ' ')
echo "== 1000-byte records between two ends of a channel over loopback (GOGC as a worker's)"
GOGC=400 go test ./flinkrt/network/ -run '^$' -bench RemoteChannel -benchtime 2000000x | grep '^Benchmark'
