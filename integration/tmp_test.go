package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A standalone JobManager stopped with SIGTERM, and an in-process job
// whose reader goes away (`| head -1`), leave nothing in the temporary
// directory.
func TestNothingLeftInTmp(t *testing.T) {
	tmp := t.TempDir()
	env := append(os.Environ(), "TMPDIR="+tmp, "LOOM_FLINK_SECRET_FILE="+filepath.Join(t.TempDir(), "secret"))
	jm := exec.Command(loomBin, "jobmanager", "--addr", "127.0.0.1:0", "--rest-addr", "")
	jm.Env = env
	if err := jm.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the JobManager's directory", func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(tmp, "loom-jm-*"))
		return len(m) == 1, ""
	})
	_ = jm.Process.Signal(syscall.SIGTERM)
	_ = jm.Wait()
	if m, _ := filepath.Glob(filepath.Join(tmp, "*")); len(m) != 0 {
		t.Errorf("a stopped JobManager left %v", m)
	}

	input := filepath.Join(t.TempDir(), "words.txt")
	writeWords(t, input)
	sh := exec.Command("sh", "-c", wordcountBin+" --input "+input+" --line-delay 1ms | head -1")
	sh.Env = env
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("wordcount | head -1: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "nothing left by the in-process job", func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(tmp, "*"))
		return len(m) == 0, ""
	})
}
