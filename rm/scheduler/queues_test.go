package scheduler

import (
	"strings"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

const twoQueues = `queue "root" {
  queue "prod" {
    capacity          = "70%"
    user_limit_factor = 10
  }
  queue "dev" {
    capacity          = "30%"
    maximum_capacity  = "MAX"
    user_limit_factor = 10
  }
}`

// queuedApp submits an application of user to queue with its AM running.
func (w *world) queuedApp(id, queue, user string) string {
	w.write(func(tx *state.WriteTxn) error {
		return tx.SubmitApp(&state.Application{ID: id, Queue: queue, User: user, AMResource: state.Resource{MemoryMB: 1, VCores: 1}, MaxAttempts: 1}, 1)
	})
	at := yarnpb.AttemptID(id, 1)
	w.write(func(tx *state.WriteTxn) error {
		var node string
		for _, n := range tx.Read().Nodes() {
			node = n.ID
		}
		_, err := tx.PlaceContainers([]*state.Container{{ID: yarnpb.ContainerID(1, id, 1, 1), AttemptID: at, NodeID: node, Resource: state.Resource{MemoryMB: 1, VCores: 1}, IsAM: true}})
		return err
	})
	return at
}

// byQueue sums the memory a plan gives each queue.
func byQueue(w *world, plan []*state.Container) map[string]int64 {
	r := w.s.Snapshot()
	out := map[string]int64{}
	for _, c := range plan {
		out[r.App(nil, c.AppID).Queue] += c.Resource.MemoryMB
	}
	return out
}

// Two queues that both want more than the cluster grow together to
// their capacities.
func TestSaturatedQueuesGetTheirCapacities(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 5000, "n2:1": 5002})
	prod := w.queuedApp("application_1_0001", "root.prod", "ann")
	dev := w.queuedApp("application_1_0002", "root.dev", "bob")
	src := asks(map[string]*Asks{prod: one(ask(1, 100, 1000, nil, true)), dev: one(ask(1, 100, 1000, nil, true))})
	s := New(parse(t, strings.Replace(twoQueues, "MAX", "100%", 1)), 0)
	got := byQueue(w, s.Plan(w.s.Snapshot(), src, 1, nil))
	// 10,000 MB of room: 7,000 and 3,000, each within a container.
	if got["root.prod"] < 6900 || got["root.prod"] > 7000 || got["root.dev"] < 2900 || got["root.dev"] > 3000 {
		t.Fatalf("placed %v: want about 7000 MB for prod and 3000 MB for dev", got)
	}
}

// A queue alone on the cluster grows into idle capacity up to its
// maximum, and no further.
func TestElasticUpToMaximum(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 10002})
	dev := w.queuedApp("application_1_0001", "root.dev", "bob")
	src := asks(map[string]*Asks{dev: one(ask(1, 100, 1000, nil, true))})
	s := New(parse(t, strings.Replace(twoQueues, "MAX", "60%", 1)), 0)
	got := byQueue(w, s.Plan(w.s.Snapshot(), src, 1, nil))
	if got["root.dev"] < 5900 || got["root.dev"] > 6000 {
		t.Fatalf("placed %v: want dev at its 60%% maximum, about 6000 MB", got)
	}
}

// YARN's user limits: with user_limit_factor 1 a single user stays
// within the queue's capacity, though the queue may grow past it; with
// minimum_user_limit_percent 50 two active users of a queue that cannot
// grow split it.
func TestUserLimits(t *testing.T) {
	tree := parse(t, `queue "root" {
  queue "a" {
    capacity                   = "50%"
    maximum_capacity           = "100%"
    minimum_user_limit_percent = 50
  }
  queue "b" { capacity = "50%" }
}`)
	w := newWorld(t, map[string]int64{"n1:1": 10002})
	ann := w.queuedApp("application_1_0001", "root.a", "ann")
	src := asks(map[string]*Asks{ann: one(ask(1, 100, 1000, nil, true))})
	s := New(tree, 0)
	plan := s.Plan(w.s.Snapshot(), src, 1, nil)
	// As in YARN, a user may go one container past its limit.
	if got := byQueue(w, plan)["root.a"]; got < 4900 || got > 5100 {
		t.Fatalf("ann alone got %d MB: want the queue's capacity, about 5000 (user_limit_factor 1)", got)
	}

	tree = parse(t, `queue "root" {
  queue "a" {
    capacity                   = "50%"
    maximum_capacity           = "50%"
    minimum_user_limit_percent = 50
  }
  queue "b" { capacity = "50%" }
}`)
	w = newWorld(t, map[string]int64{"n1:1": 10004})
	ann = w.queuedApp("application_1_0001", "root.a", "ann")
	bob := w.queuedApp("application_1_0002", "root.a", "bob")
	src = asks(map[string]*Asks{ann: one(ask(1, 100, 1000, nil, true)), bob: one(ask(1, 100, 1000, nil, true))})
	perUser := map[string]int64{}
	for _, c := range New(tree, 0).Plan(w.s.Snapshot(), src, 1, nil) {
		perUser[w.s.Snapshot().App(nil, c.AppID).User] += c.Resource.MemoryMB
	}
	if perUser["ann"] < 2400 || perUser["ann"] > 2600 || perUser["bob"] < 2400 || perUser["bob"] > 2600 {
		t.Fatalf("per user %v: want each about 2500 MB, half the queue's capacity", perUser)
	}
}

// In a fair queue the application that holds the least goes first; in
// a FIFO one the first submitted takes all it asks for.
func TestOrderingWithinALeaf(t *testing.T) {
	for _, tc := range []struct {
		ordering string
		first    int64
	}{{"fifo", 900}, {"fair", 450}} {
		t.Run(tc.ordering, func(t *testing.T) {
			w := newWorld(t, map[string]int64{"n1:1": 902})
			a := w.queuedApp("application_1_0001", "root.q", "ann")
			b := w.queuedApp("application_1_0002", "root.q", "ann")
			src := asks(map[string]*Asks{a: one(ask(1, 50, 100, nil, true)), b: one(ask(1, 50, 100, nil, true))})
			tree := parse(t, `queue "root" {
  queue "q" {
    capacity = "100%"
    ordering = "`+tc.ordering+`"
  }
}`)
			per := map[string]int64{}
			for _, c := range New(tree, 0).Plan(w.s.Snapshot(), src, 1, nil) {
				per[c.AppID] += c.Resource.MemoryMB
			}
			if per["application_1_0001"] != tc.first {
				t.Fatalf("placed %v: want %d MB for the first application", per, tc.first)
			}
		})
	}
}

// Preemption takes what a queue below its guarantee is owed from the
// queue over its guarantee, youngest first, never below the victim's
// guarantee, never an AM, and keeps what it chose before.
func TestPreemptionChoice(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 10002})
	tree := parse(t, strings.Replace(twoQueues, "MAX", "100%", 1))
	prod := w.queuedApp("application_1_0001", "root.prod", "ann")
	s := New(tree, 0)
	// prod fills the idle cluster with 1,000 MB containers, one plan at
	// a time so that each is younger than the last.
	for i := range 10 {
		plan := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{prod: one(ask(1, 1000, int32(i+1), nil, true))}), 1, nil)
		for _, c := range plan {
			c.AllocatedAt = int64(100 + i)
		}
		w.commit(plan)
	}
	if n := len(w.s.Snapshot().LiveContainers()); n != 11 {
		t.Fatalf("%d live containers, want prod's AM and 10", n)
	}
	dev := w.queuedApp("application_1_0002", "root.dev", "bob")
	// With nothing asked, nothing is taken.
	if v := s.Preempt(w.s.Snapshot(), asks(nil), nil); len(v) != 0 {
		t.Fatalf("preempted %d with no pending asks", len(v))
	}
	src := asks(map[string]*Asks{dev: one(ask(1, 1000, 5, nil, true))})
	victims := s.Preempt(w.s.Snapshot(), src, nil)
	// dev is owed 3,000 MB (its 30%) less the ~1 MB free: three of prod's
	// youngest containers, which leaves prod above 7,000 MB.
	if len(victims) != 3 {
		t.Fatalf("%d victims, want 3: %+v", len(victims), victims)
	}
	for i, v := range victims {
		if v.Container.IsAM || v.Queue != "root.prod" || v.For != "root.dev" || v.Container.AllocatedAt != int64(109-i) {
			t.Fatalf("victim %d: %+v, allocated at %d; want prod's youngest first", i, v, v.Container.AllocatedAt)
		}
	}
	// A container chosen before stays chosen, even if not the youngest.
	older := map[string]bool{}
	for _, c := range w.s.Snapshot().LiveContainers() {
		if c.AllocatedAt == 100 {
			older[c.ID] = true
		}
	}
	again := s.Preempt(w.s.Snapshot(), src, older)
	if len(again) != 3 || !older[again[0].Container.ID] {
		t.Fatalf("with an older container marked, victims %+v: want it first", again)
	}

	// Bounded to 15% of the cluster a round, a pass newly chooses two
	// containers (the second goes past 15%); those it chose count as
	// marked in the next, which chooses the third.
	s.PreemptionPerRound = 0.15
	first := s.Preempt(w.s.Snapshot(), src, nil)
	if len(first) != 2 || first[0].Container.AllocatedAt != 109 || first[1].Container.AllocatedAt != 108 {
		t.Fatalf("first bounded round chose %+v, want prod's two youngest", first)
	}
	marked := map[string]bool{first[0].Container.ID: true, first[1].Container.ID: true}
	second := s.Preempt(w.s.Snapshot(), src, marked)
	if len(second) != 3 || second[2].Container.AllocatedAt != 107 {
		t.Fatalf("second bounded round chose %+v, want the two marked and the next youngest", second)
	}
}
