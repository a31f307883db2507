package rm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"loom/errdefs"
	"loom/proto/yarnpb"
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
