package flink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

type fakeAsker struct {
	mu       sync.Mutex
	asked    int
	released []string
}

func (f *fakeAsker) AddContainerRequest(rmclient.ContainerRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
}

func (f *fakeAsker) RemoveContainerRequest(rmclient.ContainerRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked--
}

func (f *fakeAsker) ReleaseContainer(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, id)
}

func (f *fakeAsker) Available() (*yarnpb.Resource, int32) {
	return &yarnpb.Resource{MemoryMb: 100, Vcores: 1}, 2
}

func (f *fakeAsker) outstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

type fakeNMs struct {
	mu      sync.Mutex
	fail    error
	started []*yarnpb.StartContainerRequest
	stopped []string
}

func (f *fakeNMs) Start(_ context.Context, _ string, req *yarnpb.StartContainerRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.started = append(f.started, req)
	return nil
}

func (f *fakeNMs) Stop(_ context.Context, _ string, ids ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, ids...)
	return nil
}

func (f *fakeNMs) Close() error { return nil }

type fakeRegistry struct {
	mu      sync.Mutex
	removed map[string]string
	idle    []string
}

func (f *fakeRegistry) RemoveIdle(time.Duration) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.idle
	f.idle = nil
	return out
}

func (f *fakeRegistry) RemoveTaskManager(id, cause string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed[id] = cause
}

func testDriver(slots, maxFailed int) (*Driver, *fakeAsker, *fakeNMs, *fakeRegistry) {
	asks, nms, reg := &fakeAsker{}, &fakeNMs{}, &fakeRegistry{removed: map[string]string{}}
	d := newDriver(TaskManagerSpec{Slots: slots, MemoryMB: 512, VCores: 1, MaxFailed: maxFailed,
		Resources: []*yarnpb.LocalResource{{Name: "loom"}, {Name: "job", Sha256: strings.Repeat("a", 64)}},
		Artifacts: map[string]string{strings.Repeat("a", 64): "job"}}, hclog.NewNullLogger(), nms)
	d.amrm, d.rm, d.jmAddr = asks, reg, "127.0.0.1:6123"
	return d, asks, nms, reg
}

// give hands containers to the driver as the AMRM client does: each
// fulfils one outstanding ask.
func give(d *Driver, asks *fakeAsker, ids ...string) {
	asks.mu.Lock()
	asks.asked = max(0, asks.asked-len(ids))
	asks.mu.Unlock()
	d.allocated(containers(ids...))
	d.launches.Wait()
}

func containers(ids ...string) []*yarnpb.Container {
	var out []*yarnpb.Container
	for _, id := range ids {
		out = append(out, &yarnpb.Container{Id: id, NodeId: "127.0.0.1:8041", Resource: &yarnpb.Resource{MemoryMb: 512, Vcores: 1}, Priority: tmPriority})
	}
	return out
}

func TestDriverAsksForTheTaskManagersMissingSlotsNeed(t *testing.T) {
	d, asks, _, _ := testDriver(2, 3)
	for _, c := range []struct{ slots, want int }{{5, 3}, {4, 2}, {1, 1}, {0, 0}, {6, 3}} {
		d.SlotsWanted(c.slots)
		if got := asks.outstanding(); got != c.want {
			t.Errorf("%d slots missing: %d containers asked, want %d", c.slots, got, c.want)
		}
	}
}

func TestDriverStartsTaskManagersAndReleasesSurplus(t *testing.T) {
	d, asks, nms, _ := testDriver(2, 3)
	d.SlotsWanted(4)
	give(d, asks, "c1", "c2", "c3")
	if len(nms.started) != 2 || len(asks.released) != 1 || asks.released[0] != "c3" {
		t.Fatalf("started %d, released %v; want 2 started and c3 released", len(nms.started), asks.released)
	}
	cmd := strings.Join(nms.started[0].LaunchContext.Command, " ")
	for _, want := range []string{"./loom taskmanager", "--jobmanager 127.0.0.1:6123", "--slots 2", "--id c", "--artifact " + strings.Repeat("a", 64) + "=job"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("TaskManager command %q lacks %q", cmd, want)
		}
	}
	if len(nms.started[0].LaunchContext.LocalResources) != 2 {
		t.Errorf("TaskManager local resources: %v", nms.started[0].LaunchContext.LocalResources)
	}
	// Still missing as far as the RM knows, but starting: nothing more asked.
	d.SlotsWanted(4)
	if asks.outstanding() != 0 {
		t.Errorf("%d containers asked while the TaskManagers start", asks.outstanding())
	}
	// One registers; its slots are taken, the other is still on its way.
	d.TaskManagerRegistered("c1")
	d.SlotsWanted(2)
	if asks.outstanding() != 0 {
		t.Errorf("%d containers asked after one TaskManager registered", asks.outstanding())
	}
	d.Stop()
	if len(nms.stopped) != 2 {
		t.Errorf("stop stopped %v, want both TaskManagers", nms.stopped)
	}
}

func TestDriverReplacesLostTaskManagersThenGivesUp(t *testing.T) {
	d, asks, nms, reg := testDriver(1, 1)
	fatal := make(chan string, 1)
	d.setFatal(func(cause string) { fatal <- cause })
	d.SlotsWanted(1)
	give(d, asks, "c1")
	d.TaskManagerRegistered("c1")
	d.SlotsWanted(0)

	// Its container exits: the Flink RM hears of it at once.
	d.completed([]*yarnpb.ContainerStatus{{ContainerId: "c1", ExitStatus: 137, Diagnostics: "killed"}})
	if cause := reg.removed["c1"]; !strings.Contains(cause, "exited with code 137") {
		t.Fatalf("the Flink RM was told %q", cause)
	}
	d.SlotsWanted(1) // as the Flink RM would say next
	if asks.outstanding() != 1 {
		t.Fatalf("%d containers asked to replace the lost one, want 1", asks.outstanding())
	}

	// The replacement fails to start: one failure too many.
	nms.fail = errors.New("no such node")
	give(d, asks, "c2")
	select {
	case cause := <-fatal:
		if !strings.Contains(cause, "could not be started") || !strings.Contains(cause, "more than the 1 allowed") {
			t.Errorf("gave up with %q", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the driver did not give up after 2 failures with 1 allowed")
	}
	if fmt.Sprint(asks.released) != "[c2]" {
		t.Errorf("released %v, want the container that failed to start", asks.released)
	}
	d.SlotsWanted(1)
	if asks.outstanding() != 0 {
		t.Errorf("%d containers asked after giving up", asks.outstanding())
	}
}

func TestDriverSaysWhyAJobWaits(t *testing.T) {
	d, _, _, _ := testDriver(1, 1)
	d.SlotsWanted(3)
	d.mu.Lock()
	d.askedSince = time.Now().Add(-2 * waitNoteAfter)
	d.noteLocked()
	note := d.note
	d.mu.Unlock()
	for _, want := range []string{"3 TaskManager containers (512 MB, 1 vcore each) are not allocated", "100 MB and 1 vcore free on 2 nodes"} {
		if !strings.Contains(note, want) {
			t.Errorf("note %q lacks %q", note, want)
		}
	}
}

func TestDriverReturnsIdleTaskManagers(t *testing.T) {
	d, asks, nms, reg := testDriver(1, 0)
	d.spec.IdleTimeout = time.Second
	d.SlotsWanted(2)
	give(d, asks, "c1", "c2")
	d.TaskManagerRegistered("c1")
	d.TaskManagerRegistered("c2")
	d.SlotsWanted(0)
	reg.idle = []string{"c2"}
	d.releaseIdle()
	d.launches.Wait()
	if fmt.Sprint(nms.stopped) != "[c2]" {
		t.Fatalf("stopped %v, want the idle c2", nms.stopped)
	}
	// Its container's end is no failure.
	d.completed([]*yarnpb.ContainerStatus{{ContainerId: "c2", ExitStatus: 143}})
	if d.failed != 0 || len(reg.removed) != 0 {
		t.Errorf("an idle TaskManager's exit counted as a failure (%d) or a loss (%v)", d.failed, reg.removed)
	}
	// A new need asks for a container again.
	d.SlotsWanted(1)
	if asks.outstanding() != 1 {
		t.Errorf("%d asked after an idle TaskManager left, want 1", asks.outstanding())
	}
}

func TestDriverKeepsToMaxSlots(t *testing.T) {
	d, asks, _, _ := testDriver(2, 0)
	d.spec.MaxSlots = 5
	d.SlotsWanted(10)
	if asks.outstanding() != 2 {
		t.Fatalf("%d containers of 2 slots asked with --max-slots 5, want 2", asks.outstanding())
	}
	give(d, asks, "c1", "c2")
	d.TaskManagerRegistered("c1")
	d.TaskManagerRegistered("c2")
	d.SlotsWanted(6)
	if asks.outstanding() != 0 || !strings.Contains(d.note, "--max-slots") {
		t.Errorf("asked %d beyond the cap; note %q", asks.outstanding(), d.note)
	}
}

// A new AM attempt takes over the TaskManager containers of the last one:
// it asks for none for them, counts them once they register (even before
// it knew of them), and replaces one that never registers.
func TestDriverAdoptsAnEarlierAttemptsTaskManagers(t *testing.T) {
	d, asks, nms, _ := testDriver(1, 3)
	d.SlotsWanted(2)
	d.TaskManagerRegistered("c3") // registered before adopt ran
	d.adopt(containers("c1", "c2", "c3"))
	if got := asks.outstanding(); got != 0 {
		t.Fatalf("%d containers asked with two adopted TaskManagers starting, want 0", got)
	}
	if d.running["c3"] == nil || d.starting["c3"] != nil {
		t.Errorf("a TaskManager registered before adopt is not running: starting %v, running %v", d.starting, d.running)
	}
	d.TaskManagerRegistered("c1")
	d.SlotsWanted(1) // the ResourceManager counts c1's slot now
	if d.running["c1"] == nil || asks.outstanding() != 0 {
		t.Fatalf("c1 registered: running %v, %d asked", d.running, asks.outstanding())
	}
	d.mu.Lock()
	d.starting["c2"].started = time.Now().Add(-adoptTimeout - time.Second)
	d.mu.Unlock()
	d.dropUnregisteredAdopted()
	d.launches.Wait()
	if !slices.Contains(nms.stopped, "c2") || !slices.Contains(asks.released, "c2") {
		t.Errorf("c2 never registered: stopped %v, released %v; want it stopped and released", nms.stopped, asks.released)
	}
	if got := asks.outstanding(); got != 1 {
		t.Errorf("%d containers asked after dropping c2, want 1", got)
	}
	if len(nms.started) != 0 {
		t.Errorf("adopted TaskManagers were started again: %v", nms.started)
	}
}

// Failures count within the failure interval: ones spread wider than it
// never end the application, however many there are over its life.
func TestDriverCountsFailuresInAWindow(t *testing.T) {
	d, asks, _, _ := testDriver(1, 2)
	d.spec.FailureInterval = 10 * time.Minute
	now := time.Unix(1_700_000_000, 0)
	d.now = func() time.Time { return now }
	fatal := make(chan string, 1)
	d.setFatal(func(cause string) { fatal <- cause })
	d.SlotsWanted(1)
	for i := range 10 {
		id := fmt.Sprint("c", i)
		give(d, asks, id)
		d.TaskManagerRegistered(id)
		d.completed([]*yarnpb.ContainerStatus{{ContainerId: id, ExitStatus: 1, Diagnostics: "crashed"}})
		now = now.Add(6 * time.Minute) // two fit in any 10 minutes
	}
	select {
	case cause := <-fatal:
		t.Fatalf("gave up on failures 6 minutes apart: %s", cause)
	default:
	}
	// Three within the window are one too many.
	for i := range 3 {
		id := fmt.Sprint("burst", i)
		give(d, asks, id)
		d.TaskManagerRegistered(id)
		d.completed([]*yarnpb.ContainerStatus{{ContainerId: id, ExitStatus: 1, Diagnostics: "crashed"}})
		now = now.Add(time.Minute)
	}
	select {
	case cause := <-fatal:
		if !strings.Contains(cause, "within 10m0s") {
			t.Errorf("gave up with %q", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the driver did not give up after 3 failures within the window with 2 allowed")
	}
}

// A TaskManager the cluster preempts is given back at once, its
// TaskManager removed so the job fails over now, and replaced when the
// Flink RM asks again; neither that nor a preempted container's exit
// counts as a failure.
func TestDriverGivesBackPreemptedTaskManagers(t *testing.T) {
	d, asks, _, reg := testDriver(1, 0)
	d.setFatal(func(string) {})
	d.SlotsWanted(2)
	give(d, asks, "c1", "c2")
	d.TaskManagerRegistered("c1")
	d.TaskManagerRegistered("c2")
	d.SlotsWanted(0)

	d.preempted([]string{"c2", "unknown"})
	if fmt.Sprint(asks.released) != "[c2]" {
		t.Fatalf("released %v, want the preempted container", asks.released)
	}
	if cause := reg.removed["c2"]; !strings.Contains(cause, "preempted by the cluster's scheduler") {
		t.Fatalf("the Flink RM was told %q", cause)
	}
	d.SlotsWanted(1)
	if asks.outstanding() != 1 {
		t.Fatalf("%d containers asked to replace the preempted one, want 1", asks.outstanding())
	}
	// The RM kills c1 as preempted before the AM could give it back.
	d.completed([]*yarnpb.ContainerStatus{{ContainerId: "c1", ExitStatus: int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED)}})
	d.completed([]*yarnpb.ContainerStatus{{ContainerId: "c2", ExitStatus: int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED)}})
	d.mu.Lock()
	failed, gaveUp := d.failed, d.gaveUp
	d.mu.Unlock()
	if failed != 0 || gaveUp {
		t.Fatalf("preemptions counted as %d failures (gave up: %v)", failed, gaveUp)
	}
	d.Stop()
}
