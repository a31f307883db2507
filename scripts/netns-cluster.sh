#!/usr/bin/env bash
# Runs a loom cluster whose daemons each have a network namespace of their
# own, with their own address on a bridge, as if on hosts of their own: 3
# ResourceManager replicas (10.77.0.11-13), 3 NodeManagers (10.77.0.21-23)
# and a namespace for clients (10.77.0.100). Nothing listens on, or dials,
# an address outside those namespaces (the bridge has no address on this
# host). Needs root and `ip netns`.
#
#   scripts/netns-cluster.sh up DIR      # start it; prints how to use it
#   scripts/netns-cluster.sh loom ARGS   # run loom in the clients' namespace
#   scripts/netns-cluster.sh down DIR    # stop the daemons, remove the namespaces
set -euo pipefail
cd "$(dirname "$0")/.."
LOOM=${LOOM:-$PWD/bin/loom}
NET=10.77.0
BR=loombr0
RMS="11 12 13"
NMS="21 22 23"

ns_up() { # name ip
	ip netns add "$1"
	ip link add "v-$1" type veth peer name eth0 netns "$1"
	ip link set "v-$1" master "$BR" up
	ip -n "$1" addr add "$2/24" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" link set lo up
}

up() {
	dir=$(realpath -m "$1")
	mkdir -p "$dir"
	if [ "$(id -u)" != 0 ] || ! ip netns list >/dev/null 2>&1; then
		echo "netns-cluster: needs root and ip netns" >&2
		exit 1
	fi
	ip link add "$BR" type bridge
	ip link set "$BR" up
	for i in $RMS; do ns_up "loom-rm$i" "$NET.$i"; done
	for i in $NMS; do ns_up "loom-nm$i" "$NET.$i"; done
	ns_up loom-cli "$NET.100"

	tls="$dir/tls"
	"$LOOM" tls ca create --dir "$tls" >/dev/null
	sign() { "$LOOM" tls cert create --dir "$tls" --ca "$tls/ca.pem" --ca-key "$tls/ca-key.pem" "$@" >/dev/null; }
	join=""
	for i in $RMS; do join="$join${join:+,}$NET.$i:8032"; sign --server --name "rm$i"; done
	for i in $NMS; do sign --node "nm$i"; done
	sign --client --user admin --groups admins
	"$LOOM" tls config --rm "$join" --ca "$tls/ca.pem" --cert "$tls/user-admin.pem" --key "$tls/user-admin-key.pem" --path "$dir/loom.conf" >/dev/null
	files() { echo --tls-ca "$tls/ca.pem" --tls-cert "$tls/$1.pem" --tls-key "$tls/$1-key.pem"; }
	for i in $RMS; do
		# shellcheck disable=SC2046
		ip netns exec "loom-rm$i" setsid "$LOOM" rm $(files "server-rm$i") --tls-ca-key "$tls/ca-key.pem" \
			--data-dir "$dir/rm$i" --addr "$NET.$i:8032" --http-addr "$NET.$i:8088" --raft-addr "$NET.$i:8034" \
			--bootstrap-expect 3 --join "$join" >"$dir/rm$i.log" 2>&1 &
		echo $! >"$dir/rm$i.pid"
	done
	for i in $NMS; do
		# shellcheck disable=SC2046
		ip netns exec "loom-nm$i" setsid "$LOOM" nm $(files "node-nm$i") --rm "$join" --dir "$dir/nm$i" \
			--addr "$NET.$i:8041" --http-addr "$NET.$i:8042" --memory-mb 4096 --vcores 4 >"$dir/nm$i.log" 2>&1 &
		echo $! >"$dir/nm$i.pid"
	done
	echo "cluster in $dir: RMs $join"
	echo "run clients in their namespace: LOOM_CONFIG=$dir/loom.conf ip netns exec loom-cli $LOOM node list"
}

down() {
	dir=$(realpath -m "$1")
	for f in "$dir"/nm*.pid "$dir"/rm*.pid; do
		[ -f "$f" ] || continue
		kill -TERM "$(cat "$f")" 2>/dev/null || true
	done
	for f in "$dir"/nm*.pid "$dir"/rm*.pid; do
		[ -f "$f" ] || continue
		for _ in $(seq 100); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	for i in $RMS; do ip netns del "loom-rm$i" 2>/dev/null || true; done
	for i in $NMS; do ip netns del "loom-nm$i" 2>/dev/null || true; done
	ip netns del loom-cli 2>/dev/null || true
	ip link del "$BR" 2>/dev/null || true
}

case "${1:-}" in
up) up "${2:?usage: $0 up DIR}" ;;
down) down "${2:?usage: $0 down DIR}" ;;
loom) shift; exec ip netns exec loom-cli "$LOOM" "$@" ;;
*) echo "usage: $0 up DIR | down DIR | loom ARGS..." >&2; exit 2 ;;
esac
