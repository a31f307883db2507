#!/usr/bin/env bash
# Drives Flink's own web dashboard against loom, page by page, in headless
# Chromium (scripts/dashboard-check), and prints every failed request and
# browser error. It starts a standalone JobManager serving the dashboard
# (--web-dir), two TaskManagers, a checkpointed event-time job that keeps
# running and a wordcount that finishes.
#
#   scripts/dashboard-check.sh WEB_DASHBOARD_DIR
#
# WEB_DASHBOARD_DIR is flink-runtime-web/web-dashboard of a Flink checkout;
# it is built there (npm install, ng build: web/) unless web/ exists.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/dashboard-check.sh FLINK/flink-runtime-web/web-dashboard}
if [ ! -f "$src/web/index.html" ]; then
	(cd "$src" && npm install --no-audit --no-fund --loglevel=error && npm install --no-save --no-audit --no-fund --loglevel=error less &&
		npx ng build --configuration production --base-href ./)
fi
make build >/dev/null
d=$(mktemp -d -t loom-dashboard.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
export LOOM_FLINK_SECRET_FILE=$d/secret
port=$((20000 + RANDOM % 20000))
export LOOM_JOBMANAGER=127.0.0.1:$port
bin/loom jobmanager --addr "$LOOM_JOBMANAGER" --rest-addr 127.0.0.1:$((port + 1)) --web-dir "$src/web" --dir "$d/jm" --log-dir "$d/jm-logs" >"$d/jm.log" 2>&1 & pids+=($!)
for i in 1 2; do
	bin/loom taskmanager --jobmanager "$LOOM_JOBMANAGER" --slots 2 --dir "$d/tm$i" --log-dir "$d/tm$i-logs" >"$d/tm$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 100); do
	[ "$(grep -c 'registered with' "$d"/tm*.log 2>/dev/null | awk -F: '{s+=$2} END {print s}')" = 2 ] && break
	sleep 0.1
done
bin/loom run -t remote -d -p 2 --checkpoint-interval 1s --checkpoint-dir "$d/cp" bin/examples/topspeedwindow --duration 0 --output "$d/out" >/dev/null
printf 'to be or not to be\nthat is the question\n' >"$d/words.txt"
bin/loom run -t remote -p 2 bin/examples/wordcount --input "$d/words.txt" --output "$d/wc" >/dev/null
sleep 3 # a few checkpoints and metric reports
link=$(grep -o 'http://[0-9.:]*/?token=[0-9a-f]*' "$d/jm.log" | head -1)
go run ./scripts/dashboard-check -url "$link"
