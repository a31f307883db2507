#!/usr/bin/env bash
# Recovery and checkpoint figures (see docs/BENCHMARKS.md), on a local
# cluster of 3 NodeManagers:
# 1. scripts/recoverybench: a TaskManager of a per-job wordcount with 1 s
#    checkpoints killed -9; time to RUNNING again and to the first new
#    committed output (RUNS runs, median), with the default restart delay
#    (1 s) and with a 100 ms one. Then the same for grep, four regions on
#    two TaskManagers, with region failover (the default) and with full.
# 2. wordcount per-job at -p 2 over a generated text (SIZE_MB, discarding
#    the counts), without checkpoints and with a checkpoint every second,
#    THROUGHPUT_RUNS of each in turn: the job's time from all tasks
#    RUNNING to FINISHED, its throughput, and its checkpoints' durations
#    and sizes (median).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10}
size=${SIZE_MB:-256}
truns=${THROUGHPUT_RUNS:-5}
. scripts/local-cluster.sh

go run ./scripts/recoverybench -runs "$runs" -interval 1s -dir "$dir/recovery" 2>/dev/null
go run ./scripts/recoverybench -runs "$runs" -interval 1s -initial-backoff 100ms -dir "$dir/recovery-fast" 2>/dev/null
go run ./scripts/recoverybench -job grep -runs "$runs" -interval 1s -initial-backoff 100ms -dir "$dir/recovery-region" 2>/dev/null
go run ./scripts/recoverybench -job grep -failover full -runs "$runs" -interval 1s -initial-backoff 100ms -dir "$dir/recovery-full" 2>/dev/null

words=$(go run ./scripts/gentext -size $((size << 20)) -out "$dir/text.txt")

# median: the median of the numbers on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%g\n", m }'; }

# stamp FILE PATTERN: the seconds `loom run` stamped on the first line
# matching PATTERN.
stamp() { grep -m1 -- "$2" "$1" | sed -n 's/^\[ *\([0-9.]*\)s\].*/\1/p'; }

echo "wordcount per-job -p 2, ${size} MB text ($words words), counts discarded, $truns runs of each, alternating:"
for r in $(seq "$truns"); do
	for mode in none 1s; do
		args=()
		[ "$mode" != none ] && args=(--checkpoint-interval "$mode" --checkpoint-dir "$dir/cp")
		log="$dir/run.$mode.$r"
		bin/loom run -t per-job -p 2 "${args[@]}" bin/examples/wordcount --input "$dir/text.txt" --discard >"$log" 2>&1 || { cat "$log"; exit 1; }
		start=$(stamp "$log" "tasks RUNNING")
		end=$(stamp "$log" "job .* FINISHED$")
		awk -v a="$start" -v b="$end" 'BEGIN { print b - a }' >>"$dir/secs.$mode"
		app=$(grep -o 'application_[0-9_]*' "$log" | head -1)
		bin/loom app logs "$app" 2>/dev/null | grep "checkpoint completed" >>"$dir/cps.$mode" || true
	done
done
for mode in none 1s; do
	secs=$(median <"$dir/secs.$mode")
	printf "  checkpoints %-5s all tasks RUNNING to FINISHED, median %.2fs (%s): %sM words/s\n" "$mode" "$secs" \
		"$(sort -n "$dir/secs.$mode" | tr '\n' ' ' | sed 's/ $//')" "$(awk -v w="$words" -v s="$secs" 'BEGIN { printf "%.2f", w / s / 1e6 }')"
	if [ -s "$dir/cps.$mode" ]; then
		printf "  checkpoints %-5s %s completed; duration median %s ms, max %s ms; size median %s bytes\n" "$mode" "$(wc -l <"$dir/cps.$mode")" \
			"$(sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p' "$dir/cps.$mode" | median)" \
			"$(sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p' "$dir/cps.$mode" | sort -n | tail -1)" \
			"$(sed -n 's/.*size=\([0-9]*\).*/\1/p' "$dir/cps.$mode" | median)"
	fi
done
