package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// A cluster with small retention limits runs many short applications:
// the RM keeps only the newest ended ones, its tables stay within the
// limit, its memory stays small, and a long application running all the
// while is untouched.
func TestRetentionKeepsTheRMSmall(t *testing.T) {
	const keep, apps = 10, 120
	c := startCluster(t, clusterOpts{nodes: 2, extra: []string{"--max-completed-apps", strconv.Itoa(keep), "--gc-interval", "200ms"}})
	long := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "1", "--memory-mb", "64", "--", "sleep", marker()))
	for i := 0; i < apps; i++ {
		c.mustLoom("dshell", "--num-containers", "2", "--memory-mb", "32", "--", "true")
	}
	http := rmclient.HTTPClient(c.signed(tlstest.User("root", "admins")))
	var rows map[string]int
	waitFor(t, 30*time.Second, fmt.Sprintf("at most %d ended applications kept", keep), func() (bool, string) {
		resp, err := http.Get("https://" + c.httpAddr + "/ws/v1/cluster/info")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var info struct {
			ClusterInfo struct {
				Rows map[string]int `json:"stateRows"`
			} `json:"clusterInfo"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			return false, err.Error()
		}
		rows = info.ClusterInfo.Rows
		return rows["applications"] <= keep+1, fmt.Sprint(rows)
	})
	// Each kept application holds one attempt and its three containers.
	if rows["attempts"] > keep+1 || rows["containers"] > 3*(keep+1) {
		t.Errorf("state rows after GC: %v, want at most %d applications' worth", rows, keep+1)
	}
	var listed []appJSON
	if err := json.Unmarshal([]byte(c.mustLoom("app", "list", "--all", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) > keep+1 {
		t.Errorf("app list --all shows %d applications, want at most %d", len(listed), keep+1)
	}
	if a := c.app(long); a.State != "RUNNING" {
		t.Errorf("the long application is %s after GC, want RUNNING", a.State)
	}
	if rss := rssMiB(t, c.rmPid()); rss > 128 {
		t.Errorf("RM resident memory %d MiB after %d applications, want at most 128", rss, apps)
	}
	c.mustLoom("app", "kill", long)
}

// rssMiB is a process's resident memory.
func rssMiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb >> 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}
