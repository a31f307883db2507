package jobmanager

import (
	"context"
	"fmt"
	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/state/storage/s3test"
	"github.com/loom-project/loom/proto/flinkpb"
	"strings"
	"testing"
)

// A job's checkpoint and savepoint locations: an absolute path, a file:
// URI or an s3:// URL, each normalized; anything else is refused with
// the key it came from.
func TestCheckpointLocations(t *testing.T) {
	s, err := checkpointSettingsOf(map[string]string{
		ConfCheckpointDir:     "s3a://ckpt-bucket/jobs/",
		ConfSavepointDir:      "file:///shared/savepoints",
		ConfSavepointPath:     "s3://ckpt-bucket/savepoints/savepoint-1/_metadata",
		ConfCheckpointMaxConc: "1",
	}, "0123")
	if err != nil {
		t.Fatal(err)
	}
	if s.base != "s3://ckpt-bucket/jobs" || s.dir != "s3://ckpt-bucket/jobs/0123" || s.savepointDir != "/shared/savepoints" ||
		s.restorePath != "s3://ckpt-bucket/savepoints/savepoint-1/_metadata" {
		t.Errorf("settings: %+v", s)
	}
	if s, err := checkpointSettingsOf(map[string]string{}, "j"); err != nil || s.dir != DefaultCheckpointDir()+"/j" {
		t.Errorf("the default directory: %q, %v", s.dir, err)
	}
	for key, v := range map[string]string{
		ConfCheckpointDir: "checkpoints",
		ConfSavepointDir:  "hdfs://nn/savepoints",
		ConfSavepointPath: "s3://UPPER/x",
	} {
		_, err := checkpointSettingsOf(map[string]string{key: v}, "j")
		if err == nil || !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("%s=%s: %v, want an error naming the key", key, v, err)
		}
	}
}

// readMeta finds a checkpoint by its directory or its _metadata file, and
// says which holds no completed checkpoint.
func TestReadMetaOfALocalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, _, err := readMeta(ctx, dir); err == nil || !strings.Contains(err.Error(), "holds no completed checkpoint or savepoint") {
		t.Errorf("a directory without _metadata: %v", err)
	}
	if err := writeMeta(ctx, dir, &checkpointMeta{Version: 1, CheckpointID: 7}); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{dir, dir + "/" + MetadataFile} {
		m, d, err := readMeta(ctx, loc)
		if err != nil || m.CheckpointID != 7 || d != dir {
			t.Errorf("readMeta(%s) = %+v, %q, %v", loc, m, d, err)
		}
	}
}

// After an AM failover the JobMaster resumes from the newest checkpoint
// whose _metadata was stored; a newer one without it (the AM died while
// its subtasks wrote) is passed over. The same in a directory and in a
// bucket of a real S3 server.
func TestLatestCompleteCheckpoint(t *testing.T) {
	check := func(t *testing.T, jobDir string) {
		ctx := context.Background()
		if m, _, err := latestCheckpoint(ctx, jobDir); m != nil || err != nil {
			t.Fatalf("with no checkpoints: %+v, %v", m, err)
		}
		for _, id := range []int64{3, 12} {
			if err := writeMeta(ctx, storage.Join(jobDir, fmt.Sprintf("chk-%d", id)), &checkpointMeta{Version: 1, CheckpointID: id}); err != nil {
				t.Fatal(err)
			}
		}
		// chk-13's subtasks wrote their files; its metadata never came.
		if err := storage.WriteFiles(ctx, storage.Join(jobDir, "chk-13"), map[string][]byte{"op-0": []byte("state")}); err != nil {
			t.Fatal(err)
		}
		if err := storage.WriteFiles(ctx, storage.Join(jobDir, "not-a-checkpoint"), map[string][]byte{MetadataFile: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		m, dir, err := latestCheckpoint(ctx, jobDir)
		if err != nil || m == nil || m.CheckpointID != 12 || dir != storage.Join(jobDir, "chk-12") {
			t.Fatalf("latest: %+v in %q, %v; want checkpoint 12", m, dir, err)
		}
	}
	t.Run("directory", func(t *testing.T) { check(t, t.TempDir()+"/job") })
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		srv.Setenv(t)
		check(t, srv.Bucket(t, "checkpoints")+"/cp/job")
	})
}

// State moves to another parallelism when it is by key (with the key
// groups unchanged) or splits; any other is refused with the way out.
func TestRescaleMovesStateByKeyOrSplits(t *testing.T) {
	v := &flinkpb.JobVertex{Parallelism: 3, MaxParallelism: 128}
	files := map[int]string{1: "op-1", 0: "op-0"}
	for _, c := range []struct {
		name string
		op   *flinkpb.Operator
		st   operatorMeta
		want string // an error's words; "" for none
	}{
		{"by key", &flinkpb.Operator{Name: "counts", KeyedState: true}, operatorMeta{Parallelism: 2, MaxParallelism: 128, KeyedState: true, Files: files}, ""},
		{"splits", &flinkpb.Operator{Name: "lines", SplitState: true}, operatorMeta{Parallelism: 2, SplitState: true, Files: files}, ""},
		{"other key groups", &flinkpb.Operator{Name: "counts", KeyedState: true}, operatorMeta{Parallelism: 2, MaxParallelism: 64, KeyedState: true, Files: files}, "SetMaxParallelism(64)"},
		{"a function's own", &flinkpb.Operator{Name: "tally"}, operatorMeta{Parallelism: 2, Files: files}, "SetParallelism(2)"},
		{"splits then, not now", &flinkpb.Operator{Name: "lines"}, operatorMeta{Parallelism: 2, SplitState: true, Files: files}, "SetParallelism(2)"},
		{"a bad subtask", &flinkpb.Operator{Name: "lines", SplitState: true}, operatorMeta{Parallelism: 2, SplitState: true, Files: map[int]string{5: "x"}}, "names subtask 5"},
	} {
		paths, err := rescale(c.op, c.st, v, "/cp")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && strings.Join(paths, " ") != "/cp/op-0 /cp/op-1":
			t.Errorf("%s: paths %q, want every old subtask's in order", c.name, paths)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}
