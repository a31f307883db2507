package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Two queues at 70/30 with elastic maximums, on two 2,048 MB nodes.
const seventyThirty = `queue "root" {
  queue "prod" {
    capacity          = "70%"
    maximum_capacity  = "100%"
    user_limit_factor = 2
    acl_submit        = ["group:admins"]
  }
  queue "dev" {
    capacity          = "30%"
    maximum_capacity  = "100%"
    user_limit_factor = 2
  }
}
`

// The capacity scheduler end to end: a job in prod fills the idle
// cluster past its 70%; a job in dev arrives, and preemption takes a
// TaskManager back from prod within the grace, so dev gets its
// guarantee and finishes; the preempted job fails over from its
// checkpoint, waits for room, and its output is exactly once. A user
// prod's ACL does not name is refused, naming the queue and the user; a
// queue file that does not parse changes nothing on refresh-queues.
func TestPreemptionGivesAQueueItsGuarantee(t *testing.T) {
	queues := filepath.Join(t.TempDir(), "queues.hcl")
	if err := os.WriteFile(queues, []byte(seventyThirty), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{nodes: 2, memoryMB: 2048, extra: []string{"--queues", queues, "--preemption-grace", "5s"}})

	// prod: the AM (256 MB) and six TaskManagers of 512 MB, 81% of
	// the memory and 7 of the 8 vcores.
	prod, want, output := recoveryRun(t, c, "100ms", "-p", "6", "--queue", "prod")
	// dev: its AM fits in what is left; its TaskManager does not.
	devInput, devOutput := filepath.Join(c.dir, "dev-words.txt"), filepath.Join(c.dir, "dev-out")
	devWant := writeWords(t, devInput)
	began := time.Now()
	dev := c.command(t.Context(), "run", "-t", "per-job", "-p", "1", "--queue", "dev", wordcountBin, "--input", devInput, "--output", devOutput)
	var devOut syncBuffer
	dev.Stdout, dev.Stderr = &devOut, &devOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dev.Wait() }()
	var devID string
	waitFor(t, 30*time.Second, "dev's application id", func() (bool, string) {
		devID = appIDRe.FindString(devOut.String())
		return devID != "", devOut.String()
	})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev's job: %v\n%s", err, devOut.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("dev's job did not end:\n%s", devOut.String())
	}
	// The Flink AM gives the container back when warned, rather than at
	// the end of the grace: dev's job ran on its room while prod's job
	// was still running.
	took := time.Since(began)
	select {
	case <-prod.done:
		t.Fatalf("prod's job ended before dev's (%s after dev's submission): no preemption was needed\n%s", took, prod.out.String())
	default:
	}
	t.Logf("dev's job ran and finished %s after its submission:\n%s", took.Round(time.Millisecond), devOut.String())
	checkCounts(t, devOutput, 1, devWant)

	// prod lost a TaskManager to preemption, failed over from its
	// checkpoint, and finishes exactly once.
	if code := prod.wait(t); code != 0 {
		t.Fatalf("prod's job exited %d:\n%s\n%s", code, prod.out.String(), prod.errb.String())
	}
	checkExactlyOnce(t, output, want)
	logs := c.mustLoom("app", "logs", prod.id, "--log-files", "stderr")
	if !strings.Contains(logs, "the cluster preempts a TaskManager container; giving it back") {
		t.Errorf("prod's AM did not log giving a TaskManager back:\n%s", tail(logs, 40))
	}

	// A user prod's ACL does not name is refused.
	eve := userConfig(t, c, "eve")
	_, errs, code := runLoomEnv(append(c.env(), "LOOM_CONFIG="+eve), "dshell", "--queue", "prod", "--", "true")
	if code == 0 || !strings.Contains(errs, "user eve may not submit applications to queue root.prod") {
		t.Errorf("eve's submission to prod: exit %d, %s", code, errs)
	}
	// A bad edit: refresh-queues refuses it and the queues stay.
	if err := os.WriteFile(queues, []byte(strings.Replace(seventyThirty, `"30%"`, `"40%"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code = c.loom("admin", "refresh-queues")
	if code == 0 || !strings.Contains(errs, "queues.hcl:2: the capacities of the queues under root add up to 110%, not 100%") || !strings.Contains(errs, "the queues are unchanged") {
		t.Errorf("refresh-queues with a bad file: exit %d, %s", code, errs)
	}
	if out := c.mustLoom("queue", "list"); !strings.Contains(out, "root.dev") || !strings.Contains(out, "30.0%") {
		t.Errorf("queues after a refused refresh:\n%s", out)
	}
}

// Placement end to end: racks from `nm --rack`, a labeled partition only
// a queue with access to it uses, and TaskManagers spread one a node.
func TestPlacementRacksLabelsAndSpread(t *testing.T) {
	queues := filepath.Join(t.TempDir(), "queues.hcl")
	if err := os.WriteFile(queues, []byte(`queue "root" {
  queue "ml" {
    capacity               = "50%"
    accessible_node_labels = ["gpu"]
    label "gpu" { capacity = "100%" }
  }
  queue "default" { capacity = "50%" }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{nodes: 3, extra: []string{"--queues", queues, "--racks", "2", "--labeled-nodes", "gpu:1"}})
	racks := map[string]string{}
	var gpu string
	for _, n := range c.nodes(false) {
		racks[n.ID] = n.Rack
		if len(n.Labels) == 1 && n.Labels[0] == "gpu" {
			gpu = n.ID
		}
	}
	if len(racks) != 3 || gpu == "" || !strings.HasPrefix(racks[gpu], "/rack-") {
		t.Fatalf("nodes' racks %v, gpu node %q", racks, gpu)
	}
	// ml has all of the gpu partition, its one node; default none of it.
	var ml yarnpb.QueueJSON
	if err := json.Unmarshal([]byte(c.mustLoom("queue", "status", "ml", "-o", "json")), &ml); err != nil {
		t.Fatal(err)
	}
	if p := ml.Capacities.QueueCapacitiesByPartition; len(p) != 2 || p[1].PartitionName != "gpu" || p[1].AbsoluteCapacity != 100 || p[1].EffectiveMinResource.MemoryMB != 4096 {
		t.Errorf("ml by partition: %+v", p)
	}
	if out := c.mustLoom("queue", "status", "ml"); !strings.Contains(out, "Partition gpu: capacity 100.0% (4096 MB, 4 vcores now)") {
		t.Errorf("queue status ml:\n%s", out)
	}
	input := filepath.Join(c.dir, "words.txt")
	writeWords(t, input)
	tmNodes := func(out string) map[string]int {
		t.Helper()
		id := appIDRe.FindString(out)
		per := map[string]int{}
		for _, ct := range c.app(id).Containers {
			if !ct.IsAM {
				per[ct.NodeID]++
			}
		}
		return per
	}
	// Spread: three TaskManagers, one a node, have two nodes without
	// labels: two run, and the third waits, saying why.
	spread := c.command(t.Context(), "run", "-t", "per-job", "-p", "3", "--spread-taskmanagers", wordcountBin, "--input", input, "--output", filepath.Join(c.dir, "spread"), "--line-delay", "10ms")
	var spreadOut syncBuffer
	spread.Stdout, spread.Stderr = &spreadOut, &spreadOut
	if err := spread.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = spread.Process.Kill(); _ = spread.Wait() }()
	waitFor(t, 60*time.Second, "the third spread TaskManager waiting", func() (bool, string) {
		return strings.Contains(spreadOut.String(), "--spread-taskmanagers puts at most one on a node"), spreadOut.String()
	})
	spreadID := appIDRe.FindString(spreadOut.String())
	if per := tmNodes(spreadOut.String()); len(per) != 2 || per[gpu] != 0 {
		t.Errorf("spread TaskManagers on %v; want one on each node without labels (gpu node %s)", per, gpu)
	}
	c.mustLoom("app", "kill", spreadID)
	// The gpu partition: both TaskManagers on its node.
	out := c.mustLoom("run", "-t", "per-job", "-p", "2", "--queue", "ml", "--tm-node-label", "gpu", wordcountBin, "--input", input, "--output", filepath.Join(c.dir, "gpu"))
	if per := tmNodes(out); len(per) != 1 || per[gpu] != 2 {
		t.Errorf("gpu TaskManagers on %v; want both on %s", per, gpu)
	}
	// A queue without access to the label is refused before submitting.
	_, errs, code := c.loom("run", "-t", "per-job", "--tm-node-label", "gpu", wordcountBin, "--input", input, "--output", filepath.Join(c.dir, "no"))
	if code == 0 || !strings.Contains(errs, "queue root.default may not use nodes of that label (its accessible_node_labels: none)") {
		t.Errorf("a gpu job in default: exit %d, %s", code, errs)
	}
}
