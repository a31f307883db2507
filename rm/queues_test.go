package rm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

const testQueues = `queue "root" {
  queue "prod" {
    capacity          = "70%"
    user_limit_factor = 10
    acl_submit        = ["alice", "bob"]
  }
  queue "dev" {
    capacity          = "30%"
    maximum_capacity  = "100%"
    user_limit_factor = 10
    max_applications  = 2
    acl_administer    = ["dana"]
  }
}
`

func writeQueues(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func leaves(t *testing.T, c *rmclient.Client) string {
	t.Helper()
	qs, err := c.Queues(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
	}
	return strings.Join(names, ",")
}

func newApp(t *testing.T, c *rmclient.Client, queue string) (string, error) {
	t.Helper()
	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return app.ApplicationId, c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId, Queue: queue, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}})
}

// The leader commits its --queues file to raft; refresh-queues commits an
// edit, and a file that does not parse or that drops a queue with live
// applications changes nothing and says why.
func TestQueueFileLivesInRaftAndRefreshes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, testQueues)
	s, c := testServer(t, func(cfg *Config) { cfg.QueueFile = file })
	waitUntil(t, "the leader's queue file committed", func() bool { return leaves(t, c) == "root.prod,root.dev" })
	if m := s.State().Snapshot().Meta(); m.QueueFile != file || string(m.QueueSource) != testQueues {
		t.Fatalf("raft holds queue file %q: %q", m.QueueFile, m.QueueSource)
	}
	ctx := context.Background()
	if _, err := newApp(t, c, "dev"); err != nil {
		t.Fatal(err)
	}
	// Unchanged: nothing to commit.
	if resp, err := c.RefreshQueues(ctx); err != nil || resp.Changed {
		t.Fatalf("refresh of the same file: %+v, %v", resp, err)
	}
	// A file that does not parse: refused with its line, nothing changes.
	writeQueues(t, file, strings.Replace(testQueues, `capacity          = "30%"`, `capacity          = "40%"`, 1))
	_, err := c.RefreshQueues(ctx)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "queues.hcl:2: the capacities of the queues under root add up to 110%") || !strings.Contains(err.Error(), "the queues are unchanged") {
		t.Fatalf("refresh with a bad file: %v", err)
	}
	// A file that drops dev, which has a live application: refused.
	writeQueues(t, file, `queue "root" {
  queue "prod" { capacity = "100%" }
}
`)
	if _, err := c.RefreshQueues(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "drops queues that have live applications: root.dev (1)") {
		t.Fatalf("refresh dropping a busy queue: %v", err)
	}
	if got := leaves(t, c); got != "root.prod,root.dev" {
		t.Fatalf("queues after refused refreshes: %s", got)
	}
	// A good edit adds a queue.
	writeQueues(t, file, strings.Replace(testQueues, `  queue "dev" {
    capacity          = "30%"`, `  queue "ml" { capacity = "10%" }
  queue "dev" {
    capacity          = "20%"`, 1))
	resp, err := c.RefreshQueues(ctx)
	if err != nil || !resp.Changed || strings.Join(resp.Leaves, ",") != "root.prod,root.ml,root.dev" {
		t.Fatalf("refresh: %+v, %v", resp, err)
	}
	if got := leaves(t, c); got != "root.prod,root.ml,root.dev" {
		t.Fatalf("queues after refresh: %s", got)
	}
	// The tree is in every snapshot.
	snap, err := s.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dump := snap.(*fsmSnapshot).dump
	if dump.Meta.QueueFile != file || !strings.Contains(string(dump.Meta.QueueSource), `queue "ml"`) {
		t.Fatalf("snapshot meta %+v", dump.Meta)
	}
}

// A replica does not start on a queue file that does not parse.
func TestBadQueueFileStopsTheStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, `queue "root" {
  queue "a" { capacity = "50%" }
}`)
	cfg := DefaultConfig()
	cfg.QueueFile = file
	cfg.InMemory, cfg.Addr, cfg.HTTPAddr, cfg.DataDir = true, "127.0.0.1:0", "", t.TempDir()
	pki := tlstest.New(t)
	cfg.TLS, cfg.CA = pki.Bundle(tlstest.Server("rm")), pki.CA
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--queues: ") || !strings.Contains(err.Error(), "add up to 50%") {
		t.Fatalf("New with a bad queue file: %v", err)
	}
}

// Submit ACLs name users and groups; the refusal names the queue and the
// user. A queue at its max_applications takes no more.
func TestQueueACLsAndMaxApplications(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, testQueues)
	s, _ := testServer(t, func(cfg *Config) { cfg.QueueFile = file })
	startFakeNM(t, s, 4096)
	carol := clientAs(t, s, tlstest.User("carol"))
	bob := clientAs(t, s, tlstest.User("bob"))
	_, err := newApp(t, carol, "prod")
	if !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "user carol may not submit applications to queue root.prod") {
		t.Fatalf("carol's submission to prod: %v", err)
	}
	if _, err := newApp(t, bob, "prod"); err != nil {
		t.Fatalf("bob's submission to prod: %v", err)
	}
	for range 2 {
		if _, err := newApp(t, carol, "dev"); err != nil {
			t.Fatalf("carol's submission to dev: %v", err)
		}
	}
	if _, err := newApp(t, carol, "dev"); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "queue root.dev already has 2 live applications, its max_applications") {
		t.Fatalf("a third application in dev: %v", err)
	}
}

// An application moves to a queue its user may submit to, by its owner
// or an administrator of its queue; nobody else may move it.
func TestMoveApplication(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, testQueues)
	s, _ := testServer(t, func(cfg *Config) { cfg.QueueFile = file })
	startFakeNM(t, s, 4096)
	ctx := context.Background()
	carol := clientAs(t, s, tlstest.User("carol"))
	bob := clientAs(t, s, tlstest.User("bob"))
	dana := clientAs(t, s, tlstest.User("dana"))
	carolsApp, err := newApp(t, carol, "dev")
	if err != nil {
		t.Fatal(err)
	}
	bobsApp, err := newApp(t, bob, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Move(ctx, carolsApp, "prod"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("bob moving carol's application: %v", err)
	}
	if err := carol.Move(ctx, carolsApp, "prod"); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "user carol may not move to queue root.prod") {
		t.Fatalf("carol moving hers to prod, whose ACL does not name her: %v", err)
	}
	// dana administers dev: she moves bob's application to prod, which
	// bob may submit to.
	if err := dana.Move(ctx, bobsApp, "prod"); err != nil {
		t.Fatal(err)
	}
	if q := s.State().Snapshot().App(nil, bobsApp).Queue; q != "root.prod" {
		t.Fatalf("bob's application is in %s", q)
	}
	if err := carol.Move(ctx, carolsApp, "nope"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `queue "nope" does not exist`) {
		t.Fatalf("a move to a queue that does not exist: %v", err)
	}
}

// Preemption with YARN's protocol: a queue below its guarantee with
// pending work has containers of the queue over its guarantee named in
// that application's Allocate responses, youngest first; once the grace
// is over they are killed as PREEMPTED and the starved queue is served.
func TestPreemptionWarnsThenKills(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, testQueues)
	clock := newFakeClock()
	s, c := testServer(t, func(cfg *Config) {
		cfg.QueueFile, cfg.Clock, cfg.NodeExpiry, cfg.AMExpiry, cfg.PreemptionGrace = file, clock, time.Hour, time.Hour, 10*time.Second
	})
	nm := startFakeNM(t, s, 1024)
	prod := submitRunningIn(t, s, c, nm, "prod")
	// prod's AM (128 MB) and 7 containers of 128 MB fill the node.
	asks := []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 128, Vcores: 1}, Count: 7}}
	var got []*yarnpb.Container
	respID := int32(0)
	for len(got) < 7 {
		r := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: prod, ResponseId: respID, Asks: asks, WaitMs: 5000})
		respID = r.ResponseId
		got = append(got, r.Allocated...)
		asks[0].Count = int32(7 - len(got))
	}
	devApp, err := newApp(t, c, "dev")
	if err != nil {
		t.Fatal(err)
	}
	// dev's AM has no room: prod is over its 70% and dev below its 30%.
	var warned []string
	waitUntil(t, "prod's AM warned of preemption", func() bool {
		clock.Advance(preemptionInterval)
		r := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: prod, ResponseId: respID, WaitMs: 50})
		respID = r.ResponseId
		warned = r.Preempt
		return len(warned) > 0
	})
	if len(warned) != 1 {
		t.Fatalf("preempting %v: want one container, the room of dev's AM", warned)
	}
	youngest := got[len(got)-1].Id
	for _, c := range got {
		if c.Id > youngest {
			youngest = c.Id
		}
	}
	if warned[0] != youngest {
		t.Fatalf("preempting %v, want the youngest, %s", warned, youngest)
	}
	qs, err := c.Queues(context.Background(), "prod")
	if err != nil || qs[0].Preempting != 1 {
		t.Fatalf("queue status %+v, %v: want 1 container preempting", qs, err)
	}
	// Within the grace the container lives; after it, it is killed.
	clock.Advance(5 * time.Second)
	if ct := s.State().Snapshot().Container(warned[0]); ct.Completed() {
		t.Fatal("the container was killed within its grace")
	}
	waitUntil(t, "the preempted container killed", func() bool {
		clock.Advance(preemptionInterval)
		ct := s.State().Snapshot().Container(warned[0])
		return ct.Completed()
	})
	ct := s.State().Snapshot().Container(warned[0])
	if ct.ExitStatus != int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED) || !strings.Contains(ct.Diagnostics, "queue root.prod is over its guarantee and root.dev below") {
		t.Fatalf("preempted container: exit %d, %q", ct.ExitStatus, ct.Diagnostics)
	}
	waitUntil(t, "dev's AM container placed", func() bool {
		at := s.State().Snapshot().Attempt(nil, yarnpb.AttemptID(devApp, 1))
		return at != nil && at.AMContainerID != ""
	})
}

// /ws/v1/cluster/scheduler answers with the tree in YARN's
// CapacityScheduler names: percentages of the parent and of the cluster,
// and each leaf's applications, users and limits.
func TestSchedulerREST(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.hcl")
	writeQueues(t, file, `queue "root" {
  queue "prod" {
    capacity = "60%"
    queue "etl" { capacity = "50%" }
    queue "web" {
      capacity = "50%"
      ordering = "fair"
    }
  }
  queue "dev" {
    capacity               = "40%"
    accessible_node_labels = ["gpu"]
    label "gpu" { capacity = "100%" }
  }
}
`)
	s, c := testServer(t, func(cfg *Config) { cfg.QueueFile = file })
	nm := startFakeNM(t, s, 4000)
	submitRunningIn(t, s, c, nm, "web")
	// dev asks for what no node can give it, in both partitions: its
	// pending figures are by partition.
	devAttempt := submitRunningIn(t, s, c, nm, "dev")
	never := false
	allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: devAttempt, Asks: []*yarnpb.ResourceRequest{
		{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 1000, Vcores: 1}, Count: 2, Nodes: []string{"nosuch"}, RelaxLocality: &never},
		{Priority: 2, Capability: &yarnpb.Resource{MemoryMb: 512, Vcores: 1}, Count: 3, NodeLabel: "gpu"},
	}})
	rec := httptest.NewRecorder()
	s.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ws/v1/cluster/scheduler", nil))
	if rec.Code != 200 {
		t.Fatalf("%d: %s", rec.Code, rec.Body)
	}
	type queue struct {
		Type             string  `json:"type"`
		QueueName        string  `json:"queueName"`
		Capacity         float64 `json:"capacity"`
		AbsoluteCapacity float64 `json:"absoluteCapacity"`
		NumApplications  int     `json:"numApplications"`
		NumContainers    int     `json:"numContainers"`
		Ordering         string  `json:"orderingPolicyInfo"`
		ResourcesUsed    struct {
			Memory int64 `json:"memory"`
		} `json:"resourcesUsed"`
		Users struct {
			User []struct {
				Username string `json:"username"`
			} `json:"user"`
		} `json:"users"`
		Queues struct {
			Queue []queue `json:"queue"`
		} `json:"queues"`
		NodeLabels []string `json:"nodeLabels"`
		Capacities struct {
			ByPartition []struct {
				PartitionName    string  `json:"partitionName"`
				AbsoluteCapacity float64 `json:"absoluteCapacity"`
				UsedCapacity     float64 `json:"usedCapacity"`
			} `json:"queueCapacitiesByPartition"`
		} `json:"capacities"`
		Resources struct {
			ByPartition []struct {
				PartitionName string `json:"partitionName"`
				Used          struct {
					Memory int64 `json:"memory"`
				} `json:"used"`
				Pending struct {
					Memory int64 `json:"memory"`
				} `json:"pending"`
			} `json:"resourceUsagesByPartition"`
		} `json:"resources"`
		PendingResources struct {
			Memory int64 `json:"memory"`
		} `json:"pendingResources"`
	}
	var body struct {
		Scheduler struct {
			Info queue `json:"schedulerInfo"`
		} `json:"scheduler"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	root := body.Scheduler.Info
	if root.Type != "capacityScheduler" || root.QueueName != "root" || len(root.Queues.Queue) != 2 || root.NumApplications != 2 {
		t.Fatalf("root %+v", root)
	}
	prod := root.Queues.Queue[0]
	web := prod.Queues.Queue[1]
	if prod.QueueName != "prod" || prod.Capacity != 60 || web.QueueName != "web" || web.Capacity != 50 || web.AbsoluteCapacity != 30 {
		t.Fatalf("prod %+v, web %+v", prod, web)
	}
	if web.Type != "capacitySchedulerLeafQueueInfo" || web.Ordering != "fair" || web.NumApplications != 1 || web.NumContainers != 1 ||
		web.ResourcesUsed.Memory != 128 || prod.ResourcesUsed.Memory != 128 || len(web.Users.User) != 1 || web.Users.User[0].Username != "alice" {
		t.Fatalf("web %+v", web)
	}
	// By partition: every queue has the default one; dev, which may use
	// gpu and has all of it, has gpu too, though no node has the label
	// yet.
	if c := web.Capacities.ByPartition; len(c) != 1 || c[0].PartitionName != "" || c[0].AbsoluteCapacity != 30 ||
		len(web.Resources.ByPartition) != 1 || web.Resources.ByPartition[0].Used.Memory != 128 {
		t.Fatalf("web by partition: %+v, %+v", web.Capacities, web.Resources)
	}
	dev := root.Queues.Queue[1]
	if c := dev.Capacities.ByPartition; len(c) != 2 || c[1].PartitionName != "gpu" || c[1].AbsoluteCapacity != 100 || len(dev.NodeLabels) != 1 {
		t.Fatalf("dev by partition: %+v, labels %v", dev.Capacities, dev.NodeLabels)
	}
	if u := dev.Resources.ByPartition; len(u) != 2 || u[0].Pending.Memory != 2000 || u[1].Pending.Memory != 1536 || dev.PendingResources.Memory != 2000 {
		t.Fatalf("dev's pending by partition: %+v, in all %+v", u, dev.PendingResources)
	}
	if u := root.Resources.ByPartition; len(u) != 2 || u[0].Pending.Memory != 2000 || u[1].PartitionName != "gpu" || u[1].Pending.Memory != 1536 {
		t.Fatalf("root's pending by partition: %+v", u)
	}
	queues, err := c.Queues(t.Context(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if p := queues[0].Partitions; len(p) != 1 || p[0].Label != "gpu" || p[0].Capacity != 1 || p[0].MaxCapacity != 1 ||
		p[0].Pending.GetMemoryMb() != 1536 || queues[0].Pending.GetMemoryMb() != 2000 {
		t.Fatalf("dev's partitions: %v, pending %v", p, queues[0].Pending)
	}
}
