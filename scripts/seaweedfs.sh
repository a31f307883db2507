#!/usr/bin/env bash
# Prints the path of a SeaweedFS binary (weed), the S3-compatible server
# the tests keep checkpoints in, building it first if it is not cached.
# The Go module is fetched through the module proxy like any other; its
# go.mod has replace directives, so `go install` refuses it and it is
# built inside a copy of its directory (about 4 minutes on 2 cores, a
# 230 MB binary). LOOM_SEAWEEDFS, when set to an existing file, wins.
set -euo pipefail
VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs

if [ -n "${LOOM_SEAWEEDFS:-}" ] && [ -x "$LOOM_SEAWEEDFS" ]; then
	echo "$LOOM_SEAWEEDFS"
	exit 0
fi
GO=${GO:-go}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/loom/seaweedfs-$VERSION
bin=$cache/weed
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 2>/dev/null || true
if [ ! -x "$bin" ]; then
	echo "building SeaweedFS $VERSION into $cache (once; a few minutes)" >&2
	dir=$("$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "go mod download $MODULE@$VERSION gave no directory" >&2
		exit 1
	fi
	src=$(mktemp -d)
	trap 'rm -rf "$src"' EXIT
	cp -r "$dir/." "$src"
	chmod -R u+w "$src"
	(cd "$src" && GOFLAGS=-mod=mod "$GO" build -o "$bin.tmp" ./weed)
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
