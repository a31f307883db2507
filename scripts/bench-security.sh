#!/usr/bin/env bash
# The cost of security (see docs/BENCHMARKS.md): the cluster, per-job,
# session and data-path figures of this tree and of an earlier commit
# (PREV, default the last commit before mutual TLS), in alternating rounds
# so both see the same machine. PREV is checked out into a temporary
# worktree and built there.
set -euo pipefail
cd "$(dirname "$0")/.."
prev=${PREV:-f7a9b75}
rounds=${ROUNDS:-2}
runs=${RUNS:-5}
wt=$(mktemp -d)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$wt" "$prev"
(cd "$wt" && make -s build >/dev/null)
make -s build >/dev/null
for round in $(seq "$rounds"); do
	for tree in "$wt" "$PWD"; do
		name=this; [ "$tree" = "$wt" ] && name=$prev
		echo "### $name, round $round"
		(cd "$tree" && go run ./scripts/clusterbench -loom bin/loom -runs "$runs" 2>&1 | grep -E "dshell (1|20) containers: submit until FINISHED|200 containers")
		(cd "$tree" && RUNS=$runs bash scripts/bench-perjob.sh 2>&1 | grep -E "==|all tasks RUNNING|job FINISHED")
		(cd "$tree" && RUNS=$runs bash scripts/bench-session.sh 2>&1 | grep -E "warm TaskManagers")
		(cd "$tree" && RUNS=2 bash scripts/bench-flink-network.sh 2>&1 | grep -E "^run |^Benchmark")
	done
done
