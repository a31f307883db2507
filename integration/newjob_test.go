package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// From an empty directory outside the repository to a job of one's own
// running per-job on the cluster, as the README says: loom new job, its
// test, go build, loom run. The job's module finds loom's through the
// checkout (LOOM_SDK) and the rest through the module proxy.
func TestNewJobRunsPerJob(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	c := startCluster(t, clusterOpts{nodes: 2})
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), append(c.env(), "LOOM_SDK="+root)...)
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
		}
		return string(out)
	}
	work := t.TempDir()
	run(work, loomBin, "new", "job", "myjob")
	dir := filepath.Join(work, "myjob")
	if _, _, code := runLoomIn("", env, "new", "job", dir); code == 0 {
		t.Error("loom new job wrote into a directory that holds a job")
	}
	run(dir, "go", "test", "./...")
	run(dir, "go", "build", "-o", "myjob", ".")
	const events = 20_000
	out := run(dir, loomBin, "run", "-t", "per-job", "./myjob", "--events", strconv.Itoa(events), "--output", "counts")
	if !strings.Contains(out, "FINISHED") {
		t.Fatalf("loom run said:\n%s", out)
	}
	// Every click counted once, in its user's one-second window.
	want := map[string]int{}
	for i := 0; i < events; i++ {
		want[fmt.Sprintf("user-%d,%d", i%7, (i*10/1000+1)*1000)]++
	}
	got := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "counts", "part-*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			i := strings.LastIndexByte(sc.Text(), ',')
			n, err := strconv.Atoi(sc.Text()[i+1:])
			if i < 0 || err != nil {
				t.Fatalf("%s: bad line %q", f, sc.Text())
			}
			got[sc.Text()[:i]] += n
		}
		fh.Close()
	}
	if len(got) != len(want) {
		t.Fatalf("%d windows in %d part files, want %d", len(got), len(files), len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d clicks, want %d", k, got[k], n)
		}
	}
}
