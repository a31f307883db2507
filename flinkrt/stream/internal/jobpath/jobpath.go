// Package jobpath resolves the paths a job's program names, which its
// sources and sinks open wherever its tasks run: a relative one is taken
// from the directory `loom run` was started in, never from a container's
// working directory, which is deleted with the container.
package jobpath

import (
	"os"
	"path/filepath"
)

// EnvClientDir names the directory `loom run` was started in, which it
// gives the program when it plans the job and its workers when they run
// it.
const EnvClientDir = "LOOM_CLIENT_DIR"

// Resolve makes a path absolute: from $LOOM_CLIENT_DIR when the job was
// submitted by `loom run`, from this process's directory when the
// program runs the job itself.
func Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if dir := os.Getenv(EnvClientDir); dir != "" {
		return filepath.Join(dir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
