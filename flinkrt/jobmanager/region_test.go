package jobmanager

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/resourcemanager"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rpc"
)

// noRM is a ResourceManager that gives nothing; the test offers slots.
type noRM struct{}

func (noRM) DeclareResourceRequirements(string, string, int, resourcemanager.JobMaster) {}
func (noRM) ReleaseJob(string)                                                          {}
func (noRM) SlotsFreed(string, string)                                                  {}
func (noRM) RemoveTaskManager(string, string)                                           {}

// A job of one chained vertex at parallelism 4 is four regions. Losing
// the TaskManager of two of them restarts those two only, in new slots;
// the others keep theirs. A failure in a restarting region is part of its
// restart; a failure reaching every region restarts the whole job, as
// does the full failover strategy.
func TestRegionFailoverRestartsTheFailedRegions(t *testing.T) {
	jg := &flinkpb.JobGraph{Slots: 4, Config: map[string]string{"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "10"},
		Vertices: []*flinkpb.JobVertex{{Name: "grep", Parallelism: 4, SlotSharingGroup: "default", Operators: []*flinkpb.Operator{{Node: 0}}}}}
	jm, err := newJobMaster("job", jg, nil, noRM{}, "127.0.0.1:1", Timing{HeartbeatInterval: time.Second, HeartbeatTimeout: time.Second, SlotTimeout: time.Minute, CancelTimeout: time.Minute}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	trust, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		t.Fatal(err)
	}
	jm.conns = rpc.NewPool(0, trust.DialOptions()...)
	if jm.numRegions != 4 {
		t.Fatalf("%d regions, want 4", jm.numRegions)
	}
	offer := func(tm string) {
		t.Helper()
		if _, err := jm.offerSlots(&flinkpb.OfferSlotsRequest{TaskManagerId: tm, TaskManagerAddress: "127.0.0.1:1", DataAddress: tm + ":data",
			Slots: []*flinkpb.SlotStatus{{Index: 0}, {Index: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	offer("tm1")
	offer("tm2")
	jm.mu.Lock()
	jm.assigned = jm.placeLocked(nil)
	want := map[int]slotRef{0: {"tm1", 0}, 1: {"tm1", 1}, 2: {"tm2", 0}, 3: {"tm2", 1}}
	for l, ref := range want {
		if jm.assigned[l] != ref {
			t.Fatalf("placement %v, want %v", jm.assigned, want)
		}
	}
	for s, t := range jm.tasks[0] {
		ref := jm.assigned[s]
		*t = subtask{state: TaskRunning, tm: ref.tm}
	}
	jm.deployed = true
	jm.setStateLocked(JobRunning)

	// tm1 is lost: its two regions restart, the job runs on.
	jm.dropTaskManagerLocked("tm1")
	failed := jm.failTasksOnLocked("tm1")
	jm.failoverLocked(failed, "", "tm1 lost")
	if jm.state != JobRunning || len(jm.restarting) != 2 || jm.restarting[0] == nil || jm.restarting[1] == nil {
		t.Fatalf("state %s, regions restarting %v: want RUNNING with regions 0 and 1 restarting", jm.state, jm.restarting)
	}
	if jm.tasks[0][2].state != TaskRunning || jm.tasks[0][3].state != TaskRunning {
		t.Fatalf("subtasks of other regions: %+v %+v, want them RUNNING", jm.tasks[0][2], jm.tasks[0][3])
	}
	if jm.placeLocked(map[int]bool{0: true, 1: true}) != nil {
		t.Fatal("the restarting regions were placed without slots for them")
	}
	jm.mu.Unlock()
	offer("tm3")
	jm.mu.Lock()
	placed := jm.placeLocked(map[int]bool{0: true, 1: true})
	want = map[int]slotRef{0: {"tm3", 0}, 1: {"tm3", 1}, 2: {"tm2", 0}, 3: {"tm2", 1}}
	for l, ref := range want {
		if placed[l] != ref {
			t.Fatalf("placement %v, want %v", placed, want)
		}
	}

	// A later failure of a restarting region's task is part of its restart.
	restarts := jm.restarts
	jm.failoverLocked([][2]int{{0, 1}}, "grep (2/4)", "a late failure")
	if jm.restarts != restarts {
		t.Error("a failure in a restarting region restarted it again")
	}
	// Failures touching every region restart the job.
	jm.failoverLocked([][2]int{{0, 2}, {0, 3}}, "", "tm2 lost too")
	if jm.state != JobRestarting || len(jm.restarting) != 0 {
		t.Fatalf("state %s, regions restarting %v: want the whole job RESTARTING", jm.state, jm.restarting)
	}

	jm.regionFailover = false
	jm.setStateLocked(JobRunning)
	jm.tasks[0][3].state = TaskRunning
	jm.failoverLocked([][2]int{{0, 3}}, "", "one task failed")
	if jm.state != JobRestarting {
		t.Errorf("state %s with the full failover strategy, want RESTARTING", jm.state)
	}
	jm.mu.Unlock()
	jm.background.Wait() // the cancels sent to the TaskManagers
	for _, c := range jm.tms {
		c.release()
	}
}
