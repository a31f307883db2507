// Command s3server runs a SeaweedFS S3 server on 127.0.0.1 for benchmarks
// and people trying checkpoints in a bucket: it makes a bucket, prints the
// settings a client needs as shell `export` lines, and runs until it is
// interrupted. The binary comes from scripts/seaweedfs.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/loom-project/loom/flinkrt/state/storage/s3test"
)

func main() {
	dir := flag.String("dir", "", "where the server keeps its data (default: a temporary directory, removed at the end)")
	bucket := flag.String("bucket", "loom", "the bucket to make")
	flag.Parse()
	bin, err := s3test.Binary()
	if err != nil {
		out, berr := exec.Command("scripts/seaweedfs.sh").Output()
		if berr != nil {
			fail(fmt.Errorf("%v; and scripts/seaweedfs.sh: %v", err, berr))
		}
		bin = strings.TrimSpace(string(out))
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "s3server-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	srv, err := s3test.Launch(bin, *dir)
	if err != nil {
		fail(err)
	}
	defer srv.Stop()
	loc, err := srv.MakeBucket(*bucket)
	if err != nil {
		fail(err)
	}
	for _, kv := range srv.Env() {
		fmt.Println("export " + kv)
	}
	fmt.Printf("# bucket: %s (Ctrl-C stops the server)\n", loc)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "s3server:", err)
	os.Exit(1)
}
