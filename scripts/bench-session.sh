#!/usr/bin/env bash
# Session job start-up (see docs/BENCHMARKS.md): on a local cluster of 3
# NodeManagers, a session cluster takes RUNS submissions of
# topspeedwindow at -p 2 (`loom run -t session`, 1 s each) on warm
# TaskManagers (kept between jobs), then RUNS on cold ones (returned
# after a 1 s idle timeout before each job). Prints the median time from
# `loom run` starting to all the job's tasks RUNNING.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10}
. scripts/local-cluster.sh

# ms: milliseconds since midnight of a HH:MM:SS.mmm stamp.
ms() { awk -F'[:.]' '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }' <<<"$1"; }
median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f ms (min %d, max %d)\n", m, v[1], v[NR] }'; }

# measure SESSION WAIT: RUNS jobs, WAIT seconds apart; prints the median.
measure() {
	: >"$dir/times"
	for r in $(seq "$runs"); do
		sleep "$2"
		start=$(date +%H:%M:%S.%3N)
		out=$(bin/loom run -t session --session "$1" -p 2 bin/examples/topspeedwindow --duration 1s --output "$dir/out" --overwrite)
		running=$(sed -n 's/^\([0-9:.]*\)  all [0-9]* tasks RUNNING$/\1/p' <<<"$out")
		[ -n "$running" ] || { echo "$out"; exit 1; }
		echo $(($(ms "$running") - $(ms "$start"))) >>"$dir/times"
	done
	median <"$dir/times"
}

warm=$(bin/loom session start -d --idle-timeout 1h | grep -o 'application_[0-9_]*')
bin/loom run -t session --session "$warm" -p 2 bin/examples/topspeedwindow --duration 1s >/dev/null # starts its TaskManagers
echo "== session job submit to all tasks RUNNING, topspeedwindow -p 2, median of $runs"
echo "warm TaskManagers: $(measure "$warm" 0)"
bin/loom session stop "$warm" >/dev/null
cold=$(bin/loom session start -d --idle-timeout 1s | grep -o 'application_[0-9_]*')
echo "cold (new TaskManager containers): $(measure "$cold" 3)"
bin/loom session stop "$cold" >/dev/null
