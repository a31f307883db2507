package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/state/storage/s3test"
)

// Checkpoints and a savepoint in an S3 bucket of a real S3 server: the
// client's AWS_* settings reach the AM and TaskManagers (no NodeManager
// has them); a TaskManager killed -9 mid-run, the job restores from the
// bucket and every word is counted exactly once; the finished job's
// checkpoints are removed from the bucket and its savepoint kept; a new
// run from that savepoint ends with the same final counts.
func TestPerJobCheckpointsInS3(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "loom-state")
	srv.Setenv(t) // for the clients this test runs, and its own reads
	c := startCluster(t, clusterOpts{nodes: 3})

	// A location the job cannot use is refused before anything starts.
	_, errs, code := c.loom("run", "-t", "per-job", "--checkpoint-interval", "1s", "--checkpoint-dir", "s3://Not_A_Bucket/x", wordcountBin)
	if code == 0 || !strings.Contains(errs, "bucket name") {
		t.Errorf("a bad bucket name: exit %d: %s", code, errs)
	}
	_, errs, code = c.loom("run", "-t", "per-job", "-s", bucket+"/no-savepoint-here", wordcountBin)
	if code == 0 || !strings.Contains(errs, "not a savepoint or completed checkpoint") {
		t.Errorf("-s of a location with no savepoint: exit %d: %s", code, errs)
	}

	r, want, output := recoveryRunIn(t, c, bucket+"/checkpoints", "3ms")
	j := c.waitAppJob(r.id, func(j jobJSON) bool { return j.State == "RUNNING" }, "the job RUNNING")
	out := c.mustLoom("job", "savepoint", "--app", r.id, "--dir", bucket+"/savepoints", j.ID)
	m := savepointPathRe.FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[1], bucket+"/savepoints/savepoint-") {
		t.Fatalf("job savepoint said:\n%s", out)
	}
	savepoint := m[1]

	c.killATaskManagerAndFinish(r, want, output)

	ctx := context.Background()
	waitFor(t, 30*time.Second, "the finished job's checkpoints removed from the bucket", func() (bool, string) {
		names, err := storage.List(ctx, storage.Join(bucket, "checkpoints", j.ID))
		if err != nil {
			return false, err.Error()
		}
		// The store may keep an empty prefix a little while; no
		// checkpoint holds a file.
		for _, n := range names {
			if files, _ := storage.List(ctx, storage.Join(bucket, "checkpoints", j.ID, n)); len(files) > 0 {
				return false, "left: " + n + ": " + strings.Join(files, " ")
			}
		}
		return true, ""
	})
	if ok, err := storage.Exists(ctx, storage.Join(savepoint, "_metadata")); !ok || err != nil {
		t.Fatalf("the savepoint's metadata: %v, %v", ok, err)
	}

	// From the savepoint, the job reads on from where it was taken and
	// ends with the same count of every word.
	output2 := filepath.Join(c.dir, "out-restored")
	out = c.mustLoom("run", "-t", "per-job", "-p", "2", "--slots-per-tm", "1", "--checkpoint-interval", "100ms",
		"--checkpoint-dir", bucket+"/checkpoints", "-s", savepoint, wordcountBin, "--input", filepath.Join(c.dir, "words.txt"), "--output", output2)
	if !strings.Contains(out, "FINISHED") {
		t.Fatalf("the run from the savepoint said:\n%s", out)
	}
	final := map[string]int{}
	eachCount(t, output2, func(word string, n int) { final[word] = max(final[word], n) })
	for w, n := range want {
		if final[w] != n {
			t.Errorf("restored from the savepoint, %s ends counted %d times, want %d", w, final[w], n)
		}
	}
}
