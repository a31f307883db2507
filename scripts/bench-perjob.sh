#!/usr/bin/env bash
# Per-job and application-mode start-up (see docs/BENCHMARKS.md): on a
# local cluster of 3 NodeManagers, RUNS submissions of topspeedwindow at
# -p 2 (time from `loom run` to all tasks RUNNING) and of wordcount on its
# built-in text at -p 2 (time to FINISHED), per target (TARGETS, default
# "per-job application"). Prints the median of each step as `loom run`
# stamps it: plan (per-job only: application mode plans in the AM),
# staging, AM registered, TaskManager containers running, job RUNNING,
# all tasks RUNNING, FINISHED. Each target runs a copy of each program of
# its own (a few bytes appended, so a new digest): its first submission
# stages it cold; later ones find it staged and every NodeManager's cache
# warm.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10}
. scripts/local-cluster.sh

# stamp FILE PATTERN: the seconds `loom run` stamped on the first line
# matching PATTERN.
stamp() { grep -m1 -- "$2" "$1" | sed -n 's/^\[ *\([0-9.]*\)s\].*/\1/p'; }

# median: the median of the numbers on stdin, in ms.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f ms\n", m * 1000 }'; }

measure() { # target, name, then the run's arguments
	local target=$1 name=$2-$1; shift 2
	local steps=("planned job" "staged the program" "ApplicationMaster running" "TaskManager container" "job .* RUNNING$" "tasks RUNNING" "job .* FINISHED$")
	local labels=("planned" "staged" "AM registered" "first TaskManager running" "job RUNNING (deployed)" "all tasks RUNNING" "job FINISHED")
	: >"$dir/$name.first"
	for r in $(seq "$runs"); do
		bin/loom run -t "$target" "$@" >"$dir/$name.$r" 2>&1 || { cat "$dir/$name.$r"; exit 1; }
		for s in "${steps[@]}"; do
			echo "$(stamp "$dir/$name.$r" "$s")" >>"$dir/$name.step.$s"
		done
		[ "$r" = 1 ] && cp "$dir/$name.$r" "$dir/$name.first"
	done
	echo "== $name: median of $runs $target runs, time since \`loom run\` started"
	for i in "${!steps[@]}"; do
		printf "  %-28s %s\n" "${labels[$i]}" "$(grep -v '^$' "$dir/$name.step.${steps[$i]}" | median)"
	done
	echo "  first run (cold staging and caches):"
	sed 's/^/    /' "$dir/$name.first" | grep -E "staged|ApplicationMaster|RUNNING|FINISHED" | head -6
}

# copy PROGRAM TARGET: a copy of the program with a digest of its own.
copy() {
	cp "$1" "$dir/$(basename "$1")-$2"
	printf '\0%s' "$2" >>"$dir/$(basename "$1")-$2"
	echo "$dir/$(basename "$1")-$2"
}

for target in ${TARGETS:-per-job application}; do
	echo "== $target: the programs are $(du -m bin/examples/wordcount | cut -f1) MB"
	measure "$target" topspeedwindow -p 2 "$(copy bin/examples/topspeedwindow "$target")" --duration 1s --output "$dir/tsw-$target" --overwrite
	measure "$target" wordcount -p 2 "$(copy bin/examples/wordcount "$target")" --discard
done
