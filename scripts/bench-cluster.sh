#!/usr/bin/env bash
# End-to-end figures of a local cluster of real processes (see
# docs/BENCHMARKS.md). Needs bin/loom (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./scripts/clusterbench -loom bin/loom "$@"
