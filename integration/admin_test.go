package integration

import (
	"strings"
	"testing"
)

// Admin commands say, node by node, what they did, and what a node
// already was when there was nothing to do; exit 0 either way.
func TestAdminNodeCommandsSayWhatTheyDid(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	nodes := c.nodes(false)
	if len(nodes) != 2 {
		t.Fatalf("nodes: %+v", nodes)
	}
	a, b := nodes[0].ID, nodes[1].ID
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "decommission", "--graceful", a}, "node " + a + ": RUNNING -> DECOMMISSIONING"},
		{[]string{"admin", "decommission", "--graceful", a}, "node " + a + ": already DECOMMISSIONING, nothing to do"},
		{[]string{"admin", "recommission", a}, "node " + a + ": DECOMMISSIONING -> RUNNING"},
		{[]string{"admin", "recommission", a}, "node " + a + ": already RUNNING, nothing to do"},
		{[]string{"admin", "decommission", b}, "node " + b + ": RUNNING -> DECOMMISSIONED"},
		{[]string{"admin", "decommission", b}, "node " + b + ": already DECOMMISSIONED, nothing to do"},
		{[]string{"admin", "recommission", b}, "node " + b + ": DECOMMISSIONED -> SHUTDOWN (it comes back RUNNING when its NodeManager registers again)"},
	} {
		if out := c.mustLoom(step.args...); !strings.Contains(out, step.want) {
			t.Errorf("loom %s said %q, want %q", strings.Join(step.args, " "), out, step.want)
		}
	}
	if _, errs, code := c.loom("admin", "recommission"); code == 0 || !strings.Contains(errs, "name the nodes") {
		t.Errorf("recommission of no node: exit %d, %s", code, errs)
	}
	if _, errs, code := c.loom("admin", "recommission", "nosuch:1"); code == 0 || !strings.Contains(errs, "nosuch:1 not found") {
		t.Errorf("recommission of a node that is not: exit %d, %s", code, errs)
	}
}
