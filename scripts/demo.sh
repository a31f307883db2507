#!/usr/bin/env bash
# The demo: a local cluster (1 ResourceManager, 3 NodeManagers) in a
# temporary directory, two streaming jobs each in an application of its
# own (per-job mode), their results, then everything stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
LOOM=$PWD/bin/loom
dir=$(mktemp -d -t loom-demo.XXXXXX)
port=${LOOM_DEMO_PORT:-18032}
export LOOM_RM=127.0.0.1:$port
export LOOM_CONFIG=$dir/cluster/loom.conf
cluster_pid=
cleanup() {
	if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
		kill -TERM "$cluster_pid"; wait "$cluster_pid" || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

"$LOOM" cluster up --nodes 3 --dir "$dir/cluster" --rm-addr "$LOOM_RM" --http-addr 127.0.0.1:$((port + 56)) --no-user-config >"$dir/cluster.out" 2>&1 &
cluster_pid=$!
for _ in $(seq 300); do
	grep -q "cluster ready" "$dir/cluster.out" 2>/dev/null && break
	kill -0 "$cluster_pid" 2>/dev/null || { cat "$dir/cluster.out"; exit 1; }
	sleep 0.1
done
cat "$dir/cluster.out"

echo
echo "\$ loom run -t per-job -p 2 bin/examples/topspeedwindow --duration 5s --output \$DIR/topspeed"
"$LOOM" run -t per-job -p 2 bin/examples/topspeedwindow --duration 5s --output "$dir/topspeed"
echo
echo "top speeds (car, speed km/h, distance m, time ms), the last 3 windows of each car:"
results=$(cat "$dir"/topspeed/part-* | tr -d '()')
for car in $(cut -d, -f1 <<<"$results" | sort -un); do
	grep "^$car," <<<"$results" | sort -u -t, -k4,4n | tail -3 | sed 's/^/  /'
done

echo
echo "\$ loom run -t per-job -p 4 --slots-per-tm 2 bin/examples/wordcount --output \$DIR/wordcount"
"$LOOM" run -t per-job -p 4 --slots-per-tm 2 bin/examples/wordcount --output "$dir/wordcount"
echo
echo "the 10 most frequent words (the last count of each word):"
cat "$dir"/wordcount/part-* | tr -d '()' | awk -F, '{ c[$1] = $2 } END { for (w in c) printf "  %6d  %s\n", c[w], w }' | sort -k1,1nr -k2 | head -10

echo
echo "\$ loom app list --all"
"$LOOM" app list --all
echo
kill -TERM "$cluster_pid"; wait "$cluster_pid" || true
cluster_pid=
echo "cluster stopped; nothing left running"
