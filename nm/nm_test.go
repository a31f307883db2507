package nm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/proto/yarnpb"
)

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestLocalizerVerifiesAndCaches(t *testing.T) {
	content := []byte("#!/bin/sh\necho hi\n")
	src := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		w.Write(content)
	}))
	defer srv.Close()
	l := newLocalizer(filepath.Join(t.TempDir(), "cache"), http.DefaultClient, 0)
	ctx := context.Background()

	tests := []struct {
		name    string
		res     *yarnpb.LocalResource
		wantErr string
	}{
		{"file url", &yarnpb.LocalResource{Name: "a.sh", Url: "file://" + src, Sha256: digest(content), Executable: true}, ""},
		{"http url, cached after the file", &yarnpb.LocalResource{Name: "b.sh", Url: srv.URL + "/x", Sha256: digest(content)}, ""},
		{"digest mismatch", &yarnpb.LocalResource{Name: "c", Url: srv.URL + "/x", Sha256: digest([]byte("other"))}, "sha256 mismatch"},
		{"escaping name", &yarnpb.LocalResource{Name: "../e", Url: "file://" + src, Sha256: digest(content)}, "not a plain file name"},
		{"bad scheme", &yarnpb.LocalResource{Name: "f", Url: "ftp://x/y", Sha256: digest([]byte("f"))}, "unsupported url scheme"},
		{"missing file", &yarnpb.LocalResource{Name: "g", Url: "file:///nonexistent/loom", Sha256: digest([]byte("g"))}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			err := l.localize(ctx, work, []*yarnpb.LocalResource{tc.res})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(work, tc.res.Name))
			if err != nil || string(got) != string(content) {
				t.Fatalf("linked file: %q, %v", got, err)
			}
		})
	}
	// Only the mismatching digest went to the server: the http resource
	// with the file's digest was served from the cache.
	if fetches != 1 {
		t.Errorf("fetched %d times over http, want 1", fetches)
	}
}

func testExecutor(t *testing.T) (*executor, chan struct{}) {
	changed := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	e := &executor{
		logger:     hclog.NewNullLogger(),
		dir:        t.TempDir(),
		loc:        newLocalizer(filepath.Join(t.TempDir(), "cache"), http.DefaultClient, 0),
		grace:      300 * time.Millisecond,
		containers: map[string]*container{},
		onChange:   func() { changed <- struct{}{} },
		ctx:        ctx,
	}
	os.MkdirAll(filepath.Join(e.dir, "run"), 0o755)
	t.Cleanup(func() {
		cancel()
		e.stopAll(context.Background())
		e.wg.Wait()
	})
	return e, changed
}

const cid = "container_e01_1_0001_01_000002"

func startShell(t *testing.T, e *executor, id, script string) *container {
	t.Helper()
	err := e.start(&yarnpb.StartContainerRequest{ContainerId: id, Resource: &yarnpb.Resource{MemoryMb: 256, Vcores: 1},
		LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"sh", "-c", script}, Env: map[string]string{"GREETING": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	return e.get(id)
}

func waitDone(t *testing.T, c *container) *yarnpb.ContainerStatus {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("container %s did not complete", c.id)
	}
	return c.status()
}

func TestContainerExitCodesAndEnv(t *testing.T) {
	e, _ := testExecutor(t)
	c := startShell(t, e, cid, `echo "$GREETING $LOOM_CONTAINER_ID $LOOM_APPLICATION_ID"; pwd; exit 5`)
	st := waitDone(t, c)
	if st.ExitStatus != 5 || !strings.Contains(st.Diagnostics, "Exit code: 5") {
		t.Fatalf("status %+v, want exit 5", st)
	}
	out, _ := os.ReadFile(filepath.Join(e.logDir("application_1_0001", cid), "stdout"))
	want := "hi " + cid + " application_1_0001\n" + e.workDir("application_1_0001", cid) + "\n"
	if string(out) != want {
		t.Fatalf("stdout %q, want %q", out, want)
	}
	if err := e.start(&yarnpb.StartContainerRequest{ContainerId: cid, Resource: &yarnpb.Resource{MemoryMb: 1},
		LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"true"}}}); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Fatalf("second start of the same container: %v", err)
	}
}

func TestStopEscalatesToSIGKILLForTheWholeGroup(t *testing.T) {
	e, _ := testExecutor(t)
	// The shell ignores SIGTERM and has a child; both must go.
	c := startShell(t, e, cid, `trap "" TERM; sleep 1000.424242 & echo started; wait`)
	waitFor(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(c.logs, "stdout"))
		return strings.Contains(string(b), "started")
	})
	if err := e.stop(cid); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c)
	if st.ExitStatus != 137 || !strings.Contains(st.Diagnostics, "killed on request") {
		t.Fatalf("status %+v, want 137 (SIGKILL after the grace period)", st)
	}
	waitFor(t, func() bool { _, pids := groupRSS(c.pid); return len(pids) == 0 })
}

func TestBadStartsAreRefused(t *testing.T) {
	e, _ := testExecutor(t)
	for _, req := range []*yarnpb.StartContainerRequest{
		{ContainerId: "nope", Resource: &yarnpb.Resource{MemoryMb: 1}, LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"true"}}},
		{ContainerId: cid, Resource: &yarnpb.Resource{MemoryMb: 1}},
		{ContainerId: cid, LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"true"}}},
	} {
		if err := e.start(req); err == nil {
			t.Errorf("start %+v succeeded", req)
		}
	}
	c := startShell(t, e, cid, "true")
	if st := waitDone(t, c); st.ExitStatus != 0 {
		t.Fatalf("status %+v", st)
	}
	bad := "container_e01_1_0001_01_000003"
	if err := e.start(&yarnpb.StartContainerRequest{ContainerId: bad, Resource: &yarnpb.Resource{MemoryMb: 1},
		LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"no-such-command-loom"}}}); err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, e.get(bad)); st.ExitStatus != exitLaunch || !strings.Contains(st.Diagnostics, "not found on PATH") {
		t.Fatalf("status %+v, want a launch failure naming the command", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The localization cache stays within its bound, least recently used
// first, never takes a cut-short entry (one a crash left) for the file,
// and keeps no lock for a digest no one fetches.
func TestLocalizationCacheIsBoundedAndChecked(t *testing.T) {
	files := map[string][]byte{}
	fetches := map[string]int{}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches[r.URL.Path]++
		w.Write(files[r.URL.Path])
	}))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "cache")
	res := func(name string, size int) *yarnpb.LocalResource {
		b := []byte(strings.Repeat(name, size/len(name)))
		mu.Lock()
		files["/"+name] = b
		mu.Unlock()
		return &yarnpb.LocalResource{Name: name, Url: srv.URL + "/" + name, Sha256: digest(b), Size: int64(len(b))}
	}
	ctx := context.Background()
	l := newLocalizer(dir, http.DefaultClient, 2500)
	a, b, c := res("a", 1000), res("b", 1000), res("c", 1000)
	base := time.Now().Add(-time.Hour)
	for i, r := range []*yarnpb.LocalResource{a, b, a, c} {
		work := t.TempDir()
		if err := l.localize(ctx, work, []*yarnpb.LocalResource{r}); err != nil {
			t.Fatal(err)
		}
		// Uses one second apart, whatever the clock's resolution.
		at := base.Add(time.Duration(i) * time.Second)
		_ = os.Chtimes(filepath.Join(dir, r.Sha256), at, at)
	}
	if _, err := os.Stat(filepath.Join(dir, b.Sha256)); err == nil {
		t.Error("the least recently used entry was kept past the bound")
	}
	for _, r := range []*yarnpb.LocalResource{a, c} {
		if _, err := os.Stat(filepath.Join(dir, r.Sha256)); err != nil {
			t.Errorf("entry %s: %v", r.Name, err)
		}
	}
	if len(l.locks) != 0 {
		t.Errorf("%d digest locks kept after every fetch ended", len(l.locks))
	}

	// A cut-short entry left by an earlier process is fetched again.
	if err := os.Truncate(filepath.Join(dir, a.Sha256), 10); err != nil {
		t.Fatal(err)
	}
	l2 := newLocalizer(dir, http.DefaultClient, 0)
	work := t.TempDir()
	if err := l2.localize(ctx, work, []*yarnpb.LocalResource{{Name: "a", Url: a.Url, Sha256: a.Sha256}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "a")); len(got) != 1000 {
		t.Fatalf("a cut-short cache entry was used: %d bytes", len(got))
	}
	if fetches["/a"] != 2 {
		t.Errorf("fetched a %d times, want again after the cut", fetches["/a"])
	}
}

// The sweep after a crash stops a recorded process group only while it is
// still the container's: a pid that now runs with another start time (a
// reused number) is left alone.
func TestSweepStopsOnlyTheRecordedGroup(t *testing.T) {
	e, _ := testExecutor(t)
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	ours, stranger := start(), start()
	record := func(name string, pid int, started uint64) {
		if err := os.WriteFile(filepath.Join(e.dir, "run", name+".pgid"), []byte(fmt.Sprintf("%d %d", pid, started)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	record("ours", ours.Process.Pid, startTime(ours.Process.Pid))
	record("reused", stranger.Process.Pid, startTime(stranger.Process.Pid)+1)
	if n := e.sweepStale(); n != 1 {
		t.Fatalf("swept %d groups, want only the recorded one", n)
	}
	if err := ours.Wait(); err == nil {
		t.Error("the recorded group's process was not stopped")
	}
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process whose pid was recorded with another start time was stopped: %v", err)
	}
}

// With cgroups, a container's first instruction already runs in its
// memory cgroup: what it forks at once cannot escape the limit.
func TestAContainerStartsInsideItsCgroup(t *testing.T) {
	cg := detectCgroups("test-" + strconv.Itoa(os.Getpid()))
	if cg == nil {
		t.Skip("no writable cgroup v1 memory controller on this host")
	}
	t.Cleanup(cg.close)
	e, _ := testExecutor(t)
	e.cg = cg
	// The very first thing the command does is read its own cgroup, 20
	// times over: any that ran before the NM placed it shows outside.
	for i := range 20 {
		id := fmt.Sprintf("container_e01_1_0001_01_%06d", 100+i)
		if err := e.start(&yarnpb.StartContainerRequest{ContainerId: id, Resource: &yarnpb.Resource{MemoryMb: 64, Vcores: 1},
			LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"cat", "/proc/self/cgroup"}}}); err != nil {
			t.Fatal(err)
		}
		if st := waitDone(t, e.get(id)); st.ExitStatus != 0 {
			t.Fatalf("status %+v", st)
		}
		out, _ := os.ReadFile(filepath.Join(e.logDir("application_1_0001", id), "stdout"))
		if !strings.Contains(string(out), id) {
			t.Fatalf("container %s's command started outside its cgroup:\n%s", id, out)
		}
	}
}

// A staged file whose URL names an RM replica that does not answer is
// fetched from the leader's staging store; a file that is not staged, or
// already names the leader's store, is not fetched again elsewhere.
func TestLocalizerFetchesStagedFilesFromTheLeader(t *testing.T) {
	content := []byte("staged program")
	sum := digest(content)
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/staging/"+sum {
			http.NotFound(w, r)
			return
		}
		w.Write(content)
	}))
	defer leader.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // the replica that took the upload, gone
	l := newLocalizer(filepath.Join(t.TempDir(), "cache"), http.DefaultClient, 0)
	ctx := context.Background()
	res := &yarnpb.LocalResource{Name: "job", Url: deadURL + "/staging/" + sum, Sha256: sum}
	if err := l.localize(ctx, t.TempDir(), []*yarnpb.LocalResource{res}); err == nil {
		t.Fatal("fetched from a replica that is gone, with no leader known")
	}
	l.setStaging(leader.URL + "/staging/")
	work := t.TempDir()
	if err := l.localize(ctx, work, []*yarnpb.LocalResource{res}); err != nil {
		t.Fatalf("from the leader's store: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "job")); string(got) != string(content) {
		t.Fatalf("localized %q", got)
	}
	other := &yarnpb.LocalResource{Name: "x", Url: deadURL + "/files/" + digest([]byte("x")), Sha256: digest([]byte("x"))}
	if err := l.localize(ctx, t.TempDir(), []*yarnpb.LocalResource{other}); err == nil || strings.Contains(err.Error(), "leader") {
		t.Fatalf("a file that is not staged: %v", err)
	}
}
