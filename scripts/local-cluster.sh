# Sourced by the benchmark scripts: builds loom, starts `loom cluster up
# --nodes 3` (with RM_REPLICAS=3, three RM replicas) in a temporary
# directory ($dir) on a random port, exports LOOM_RM, and stops the
# cluster and removes $dir when the script exits.
make -s build
dir=$(mktemp -d)
cluster_pid=
cleanup() {
	if [ -n "$cluster_pid" ]; then kill -TERM "$cluster_pid" 2>/dev/null || true; wait "$cluster_pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
replicas=${RM_REPLICAS:-1}
LOOM_RM=127.0.0.1:$port
for i in $(seq 2 "$replicas"); do LOOM_RM="$LOOM_RM,127.0.0.1:$((port + 100 * (i - 1)))"; done
export LOOM_RM
export LOOM_CONFIG=$dir/cluster/loom.conf
bin/loom cluster up --nodes 3 --rm-replicas "$replicas" --dir "$dir/cluster" --rm-addr "127.0.0.1:$port" --http-addr 127.0.0.1:$((port + 56)) --no-user-config >"$dir/cluster.out" 2>&1 &
cluster_pid=$!
for _ in $(seq 300); do
	grep -q "cluster ready" "$dir/cluster.out" 2>/dev/null && break
	kill -0 "$cluster_pid" 2>/dev/null || { cat "$dir/cluster.out"; exit 1; }
	sleep 0.1
done
