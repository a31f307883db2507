#!/usr/bin/env bash
# The demo: a local cluster (1 ResourceManager, 3 NodeManagers) in a
# temporary directory, a distributed shell across 6 containers, the
# containers' output, then everything stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
LOOM=$PWD/bin/loom
dir=$(mktemp -d -t loom-demo.XXXXXX)
port=${LOOM_DEMO_PORT:-18032}
export LOOM_RM=127.0.0.1:$port
cluster_pid=
cleanup() {
	if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
		kill -TERM "$cluster_pid"; wait "$cluster_pid" || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

"$LOOM" cluster up --nodes 3 --dir "$dir" --rm-addr "$LOOM_RM" --http-addr 127.0.0.1:$((port + 56)) >"$dir/cluster.out" 2>&1 &
cluster_pid=$!
for _ in $(seq 300); do
	grep -q "cluster ready" "$dir/cluster.out" 2>/dev/null && break
	kill -0 "$cluster_pid" 2>/dev/null || { cat "$dir/cluster.out"; exit 1; }
	sleep 0.1
done
cat "$dir/cluster.out"
echo
echo "\$ loom node list"
"$LOOM" node list
echo
echo "\$ loom dshell --num-containers 6 --memory-mb 64 -- sh -c 'echo hello from \$LOOM_CONTAINER_ID on \$LOOM_NM_ADDR'"
"$LOOM" dshell --num-containers 6 --memory-mb 64 -- sh -c 'echo hello from $LOOM_CONTAINER_ID on $LOOM_NM_ADDR'
app=$("$LOOM" app list --all -o json | sed -n 's/.*"id": "\(application_[0-9_]*\)".*/\1/p' | tail -1)
echo
echo "\$ loom app logs $app   (what each container wrote)"
"$LOOM" app logs "$app" --log-files stdout | grep '^hello from'
echo
kill -TERM "$cluster_pid"; wait "$cluster_pid" || true
cluster_pid=
echo "cluster stopped; nothing left running"
