package stream_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

func partFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func writeNumbers(t *testing.T, p int, snk sink.TextFileSink[int64]) error {
	t.Helper()
	env := stream.NewEnv().SetParallelism(p)
	stream.Sink(stream.FromSource(env, "seq", source.Sequence(1, 100)), "out", snk)
	_, err := env.Execute(t.Name())
	return err
}

// A second run into a directory an earlier run wrote is refused before
// it starts (Flink's NO_OVERWRITE), so two runs' part files never mix;
// with Overwrite the earlier run's part files are replaced and nothing
// else is touched.
func TestTextFileSinkNeverMixesTwoRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := writeNumbers(t, 4, sink.TextFile[int64](dir)); err != nil {
		t.Fatal(err)
	}
	if got := partFiles(t, dir); !slices.Equal(got, []string{"part-0-0", "part-1-0", "part-2-0", "part-3-0"}) {
		t.Fatalf("first run's files: %v", got)
	}
	err := writeNumbers(t, 2, sink.TextFile[int64](dir))
	if err == nil || !strings.Contains(err.Error(), "already holds 4 files") || !strings.Contains(err.Error(), "Overwrite") {
		t.Fatalf("a second run into the same directory: %v; want it refused, saying how to overwrite", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeNumbers(t, 2, sink.TextFile[int64](dir).Overwrite(true)); err != nil {
		t.Fatal(err)
	}
	if got := partFiles(t, dir); !slices.Equal(got, []string{"notes.txt", "part-0-0", "part-1-0"}) {
		t.Fatalf("after an overwriting run at p2: %v; want its two part files and the user's file", got)
	}
}

// A relative path is the submitting directory's ($LOOM_CLIENT_DIR, which
// `loom run` sets), not the working directory of whatever runs the task.
func TestRelativePathsAreTheClientsDirectory(t *testing.T) {
	client := t.TempDir()
	t.Setenv(stream.EnvClientDir, client)
	if err := os.WriteFile(filepath.Join(client, "in.txt"), []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := stream.NewEnv().SetParallelism(1)
	snk := sink.TextFile[string]("counts")
	if snk.Dir() != filepath.Join(client, "counts") {
		t.Fatalf("the sink writes to %s", snk.Dir())
	}
	stream.Sink(stream.FromSource(env, "in", source.TextFile("in.txt")), "out", snk)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(client, "counts", "part-0-0"))
	if err != nil || string(b) != "a\nb\nc\n" {
		t.Fatalf("output in the client's directory: %q, %v", b, err)
	}
}
