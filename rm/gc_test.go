package rm

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// Retention forgets the oldest ended applications beyond the limit, and
// every ended one past the TTL, with their attempts and containers; a
// running application is untouched, and asking for a forgotten one says
// what became of it. A node that left is forgotten after its TTL.
func TestRetentionForgetsEndedApplicationsAndDepartedNodes(t *testing.T) {
	s, c := testServer(t, func(cfg *Config) {
		cfg.MaxCompletedApps, cfg.CompletedAppTTL, cfg.NodeTTL, cfg.GCInterval = 3, time.Hour, time.Hour, time.Hour
	})
	ctx := context.Background()
	nm := startFakeNM(t, s, 4096)
	running := submitRunning(t, s, c, nm)
	var ended []string
	for range 6 {
		app, err := c.NewApplication(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Bigger than the node: it waits, with no container, until killed.
		if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId,
			AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}, AmResource: &yarnpb.Resource{MemoryMb: 8192, Vcores: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kill(ctx, app.ApplicationId, "done"); err != nil {
			t.Fatal(err)
		}
		ended = append(ended, app.ApplicationId)
	}
	before := s.State().Snapshot().Counts()
	now := time.Now()
	apps, _, err := s.collectGarbage(now)
	if err != nil {
		t.Fatal(err)
	}
	if apps != 3 {
		t.Fatalf("forgot %d applications, want the 3 oldest of 6 ended ones", apps)
	}
	after := s.State().Snapshot().Counts()
	if after.Apps != before.Apps-3 || after.Attempts != before.Attempts-3 {
		t.Fatalf("tables before %+v, after %+v", before, after)
	}
	_, err = c.Report(ctx, ended[0], false)
	if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrNotFound) || !strings.Contains(err.Error(), "ended and was forgotten") || !strings.Contains(err.Error(), "keeps the last 3") {
		t.Fatalf("a forgotten application's report: %v", err)
	}
	if _, err := c.Report(ctx, ended[5], false); err != nil {
		t.Fatalf("a kept ended application: %v", err)
	}
	// Past the TTL every ended one goes; the running one stays.
	if apps, _, err = s.collectGarbage(now.Add(2 * time.Hour)); err != nil || apps != 3 {
		t.Fatalf("past the TTL forgot %d (%v), want 3", apps, err)
	}
	appID, _ := yarnpb.AppIDOfAttempt(running)
	if a, err := c.Report(ctx, appID, false); err != nil || a.State != yarnpb.AppState_APP_RUNNING {
		t.Fatalf("the running application after GC: %v %v", a.GetState(), err)
	}
	if _, err := c.Report(ctx, "application_1_0999", false); !strings.Contains(err.Error(), "not found (the ResourceManager keeps the last 3") {
		t.Fatalf("an unknown application: %v", err)
	}

	// A node that left is kept for its TTL, then forgotten.
	if err := nm.rm.UnregisterNode(ctx, nm.addr); err != nil {
		t.Fatal(err)
	}
	if _, nodes, _ := s.collectGarbage(time.Now()); nodes != 0 {
		t.Fatalf("a node that just left was forgotten")
	}
	if _, nodes, _ := s.collectGarbage(time.Now().Add(2 * time.Hour)); nodes != 1 {
		t.Fatalf("forgot %d nodes past the node TTL, want 1", nodes)
	}
}

// Ended applications keep their containers newest first, within both the
// count of applications and the count of containers: a few large
// applications bound the state as many small ones do.
func TestRetentionBoundsTheContainersOfEndedApplications(t *testing.T) {
	s, _ := testServer(t, func(cfg *Config) {
		cfg.KeepContainersOf, cfg.KeepEndedContainers, cfg.GCInterval = 100, 82, time.Hour
	})
	waitUntil(t, "leadership", s.IsLeader)
	sizes := []int{40, 40, 40, 1, 1} // oldest first
	var ids []string
	st := s.State()
	for i, n := range sizes {
		id := yarnpb.AppID(1, uint64(i+1))
		ids = append(ids, id)
		err := st.Write(st.Index()+1, func(tx *state.WriteTxn) error {
			if err := tx.PutApp(&state.Application{ID: id, Seq: uint64(i + 1), State: yarnpb.AppState_APP_FINISHED, FinishTime: int64(1000 + i), NumAttempts: 1}); err != nil {
				return err
			}
			if err := tx.PutAttempt(&state.Attempt{ID: yarnpb.AttemptID(id, 1), AppID: id, Num: 1, State: yarnpb.AttemptState_ATTEMPT_FINISHED}); err != nil {
				return err
			}
			for seq := 1; seq <= n; seq++ {
				c := &state.Container{ID: yarnpb.ContainerID(1, id, 1, int64(seq)), AppID: id, AttemptID: yarnpb.AttemptID(id, 1), NodeID: "n:1",
					State: yarnpb.ContainerState_CONTAINER_COMPLETED}
				if err := tx.PutContainer(c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.collectGarbage(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	r := s.State().Snapshot()
	for i, want := range []int{0, 40, 40, 1, 1} {
		if got := len(r.ContainersByApp(nil, ids[i])); got != want {
			t.Errorf("application %d (of %d containers) keeps %d, want %d", i+1, sizes[i], got, want)
		}
	}
}

// A running application keeps the newest of the completed containers its
// AM has heard of, all it has not heard of yet, and its AM containers;
// the completed containers of an attempt no AM will hear of go.
func TestRetentionBoundsTheCompletedContainersOfRunningApplications(t *testing.T) {
	s, _ := testServer(t, func(cfg *Config) {
		cfg.KeepCompletedOfRunning, cfg.GCInterval = 5, time.Hour
	})
	waitUntil(t, "leadership", s.IsLeader)
	id := yarnpb.AppID(1, 1)
	old, cur := yarnpb.AttemptID(id, 1), yarnpb.AttemptID(id, 2)
	st := s.State()
	var want []string
	err := st.Write(st.Index()+1, func(tx *state.WriteTxn) error {
		if err := tx.PutApp(&state.Application{ID: id, Seq: 1, State: yarnpb.AppState_APP_RUNNING, CurrentAttempt: cur, NumAttempts: 2}); err != nil {
			return err
		}
		for _, at := range []*state.Attempt{
			{ID: old, AppID: id, Num: 1, State: yarnpb.AttemptState_ATTEMPT_FAILED},
			{ID: cur, AppID: id, Num: 2, State: yarnpb.AttemptState_ATTEMPT_RUNNING},
		} {
			if err := tx.PutAttempt(at); err != nil {
				return err
			}
		}
		put := func(attempt string, num int32, seq int64, am bool, completedAt uint64, keep bool) error {
			c := &state.Container{ID: yarnpb.ContainerID(1, id, num, seq), AppID: id, AttemptID: attempt, NodeID: "n:1", IsAM: am,
				State: yarnpb.ContainerState_CONTAINER_COMPLETED, CompletedIndex: completedAt}
			if keep {
				want = append(want, c.ID)
			}
			return tx.PutContainer(c)
		}
		// The first attempt's AM and three of its containers: the AM's stays.
		if err := put(old, 1, 1, true, 1, true); err != nil {
			return err
		}
		for seq := int64(2); seq <= 4; seq++ {
			if err := put(old, 1, seq, false, uint64(seq), false); err != nil {
				return err
			}
		}
		// The current attempt's: 12 told to its AM (completed at 10..21),
		// of which the newest 5 stay, and 3 not told yet, which stay.
		for seq := int64(1); seq <= 15; seq++ {
			if err := put(cur, 2, seq, false, uint64(9+seq), seq >= 8); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.soft.markDelivered(cur, nil, 21)
	if _, _, err := s.collectGarbage(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range s.State().Snapshot().ContainersByApp(nil, id) {
		got = append(got, c.ID)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the running application keeps\n%v\nwant\n%v", got, want)
	}
}

// Retention runs before its interval is up once GCPileUp containers have
// completed since the last collection, and not while fewer have.
func TestRetentionRunsEarlyWhenCompletedContainersPileUp(t *testing.T) {
	clock := newFakeClock()
	s, _ := testServer(t, func(cfg *Config) {
		cfg.Clock, cfg.GCInterval, cfg.GCPileUp, cfg.KeepCompletedOfRunning = clock, time.Hour, 10, 5
		cfg.AMExpiry = 100 * time.Hour // the attempt lives through the test's hours
	})
	waitUntil(t, "leadership", s.IsLeader)
	id := yarnpb.AppID(1, 1)
	at := yarnpb.AttemptID(id, 1)
	st := s.State()
	seq := int64(0)
	complete := func(n int) {
		t.Helper()
		err := st.Write(st.Index()+1, func(tx *state.WriteTxn) error {
			if seq == 0 {
				if err := tx.PutApp(&state.Application{ID: id, Seq: 1, State: yarnpb.AppState_APP_RUNNING, CurrentAttempt: at, NumAttempts: 1}); err != nil {
					return err
				}
				if err := tx.PutAttempt(&state.Attempt{ID: at, AppID: id, Num: 1, State: yarnpb.AttemptState_ATTEMPT_RUNNING}); err != nil {
					return err
				}
			}
			for range n {
				seq++
				c := &state.Container{ID: yarnpb.ContainerID(1, id, 1, seq), AppID: id, AttemptID: at, NodeID: "n:1",
					State: yarnpb.ContainerState_CONTAINER_COMPLETED, CompletedIndex: uint64(seq)}
				if err := tx.PutContainer(c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.soft.markDelivered(at, nil, uint64(seq)) // its AM has heard of them all
	}
	held := func() int { return len(s.State().Snapshot().ContainersByApp(nil, id)) }
	complete(30)
	clock.advanceUntil(t, time.Second, 10*time.Minute, "the piled-up completions forgotten", func() bool { return held() == 5 })
	// Fewer than GCPileUp more: they stay until the interval is up.
	complete(8)
	clock.advanceBy(time.Second, 30*time.Second)
	if got := held(); got != 13 {
		t.Fatalf("after 8 more completions and 30 s: %d containers held, want 13 (no collection)", got)
	}
	clock.advanceUntil(t, time.Minute, 2*time.Hour, "the interval's collection", func() bool { return held() == 5 })
}
