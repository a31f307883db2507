# Sourced by benchmark scripts: start_standalone DIR starts a standalone
# `loom jobmanager` (REST off) and two `loom taskmanager --slots 1` with
# their files in DIR, adds their pids to the caller's pids array, sets jm
# to the JobManager's address, and waits for both TaskManagers to
# register. The caller's trap kills $pids.
start_standalone() {
	local d=$1 port i
	port=$((20000 + RANDOM % 20000))
	export LOOM_FLINK_SECRET_FILE=$d/secret
	jm=127.0.0.1:$port
	bin/loom jobmanager --addr "$jm" --rest-addr "" >"$d/jm.log" 2>&1 & pids+=($!)
	for i in 1 2; do
		bin/loom taskmanager --jobmanager "$jm" --slots 1 --dir "$d/tm$i" >"$d/tm$i.log" 2>&1 & pids+=($!)
	done
	for _ in $(seq 100); do
		[ "$(grep -c 'registered with' "$d"/tm*.log 2>/dev/null | awk -F: '{s+=$2} END {print s}')" = 2 ] && break
		sleep 0.1
	done
}
