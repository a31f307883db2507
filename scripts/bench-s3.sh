#!/usr/bin/env bash
# Checkpoints in a local directory against checkpoints in an S3 bucket of
# a SeaweedFS server on this host (scripts/s3server), on a local cluster
# of 3 NodeManagers (see docs/BENCHMARKS.md):
# 1. wordcount per-job at -p 2 with a checkpoint every second over a
#    paced input of 200,000 words: the checkpoints' durations (trigger to
#    the metadata stored) and sizes, median and max, RUNS jobs of each.
# 2. scripts/recoverybench: a TaskManager killed -9 mid-job; time to
#    RUNNING again and to the first new committed output (RUNS runs,
#    median), with a 100 ms restart delay.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10}
. scripts/local-cluster.sh

weed=$(scripts/seaweedfs.sh)
# Built first and run directly, so that the trap's signal reaches it.
go build -o "$dir/s3server" ./scripts/s3server
LOOM_SEAWEEDFS=$weed "$dir/s3server" -dir "$dir/s3" -bucket loom-bench >"$dir/s3.env" 2>"$dir/s3.err" &
s3_pid=$!
trap 'kill -TERM $s3_pid 2>/dev/null || true; wait $s3_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 600); do
	grep -q "^# bucket" "$dir/s3.env" 2>/dev/null && break
	kill -0 "$s3_pid" 2>/dev/null || { cat "$dir/s3.err"; exit 1; }
	sleep 0.1
done
. "$dir/s3.env"

# median: the median of the numbers on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%g\n", m }'; }

go run ./scripts/gentext -size $((1 << 20)) -out "$dir/words.txt" >/dev/null
echo "wordcount per-job -p 2, a checkpoint every second, 1 MB paced input (2 ms a line), $runs jobs in each place:"
for r in $(seq "$runs"); do
	for where in local s3; do
		cp="$dir/cp"
		[ "$where" = s3 ] && cp=s3://loom-bench/checkpoints
		log="$dir/run.$where.$r"
		bin/loom run -t per-job -p 2 --checkpoint-interval 1s --checkpoint-dir "$cp" bin/examples/wordcount \
			--input "$dir/words.txt" --discard --line-delay 2ms >"$log" 2>&1 || { cat "$log"; exit 1; }
		app=$(grep -o 'application_[0-9_]*' "$log" | head -1)
		bin/loom app logs "$app" 2>/dev/null | grep "checkpoint completed" >>"$dir/cps.$where" || true
	done
done
for where in local s3; do
	printf "  %-6s %s checkpoints; duration median %s ms, max %s ms; size median %s bytes\n" "$where" "$(wc -l <"$dir/cps.$where")" \
		"$(sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p' "$dir/cps.$where" | median)" \
		"$(sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p' "$dir/cps.$where" | sort -n | tail -1)" \
		"$(sed -n 's/.*size=\([0-9]*\).*/\1/p' "$dir/cps.$where" | median)"
done

go run ./scripts/recoverybench -runs "$runs" -interval 1s -initial-backoff 100ms -dir "$dir/recovery-local" 2>/dev/null
go run ./scripts/recoverybench -runs "$runs" -interval 1s -initial-backoff 100ms -checkpoint-dir s3://loom-bench/recovery -dir "$dir/recovery-s3" 2>/dev/null
