package jobmanager

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// Stacks merge into Flink's tree, outermost frame at the root's children,
// each node's value the samples through it; on_cpu and off_cpu keep the
// running and the parked goroutines' stacks.
func TestFlameTree(t *testing.T) {
	stacks := []*flinkpb.StackSample{
		{Frames: []string{"main:1", "run:2", "read:3"}, Count: 5, Parked: true},
		{Frames: []string{"main:1", "run:2", "map:4"}, Count: 3},
		{Frames: []string{"main:1", "flush:9"}, Count: 2},
	}
	b, _ := json.Marshal(flameTree(stacks, "full"))
	want := `{"name":"root","value":10,"children":[{"name":"main:1","value":10,"children":[{"name":"run:2","value":8,"children":[{"name":"read:3","value":5,"children":[]},{"name":"map:4","value":3,"children":[]}]},{"name":"flush:9","value":2,"children":[]}]}]}`
	if string(b) != want {
		t.Errorf("full:\n%s\nwant\n%s", b, want)
	}
	if on := flameTree(stacks, "on_cpu"); on.Value != 5 {
		t.Errorf("on_cpu value %d, want 5 (the running stacks)", on.Value)
	}
	if off := flameTree(stacks, "off_cpu"); off.Value != 5 || off.Children[0].Children[0].Children[0].Name != "read:3" {
		t.Errorf("off_cpu: %+v", off)
	}
}

// A view is sampled on first sight and again once a minute old, one
// sample at a time, and forgotten when no one asked for ten minutes.
func TestFlameGraphCache(t *testing.T) {
	var f flameGraphs
	k := flameKey{"job", "v", -1}
	t0 := time.Unix(1000, 0)
	if e, start := f.get(k, t0); !start || !e.at.IsZero() {
		t.Fatalf("first sight: start %v, %+v", start, e)
	}
	if _, start := f.get(k, t0.Add(time.Second)); start {
		t.Fatal("a second sample started while one runs")
	}
	f.put(k, []*flinkpb.StackSample{{Frames: []string{"a:1"}, Count: 1}}, t0.Add(5*time.Second))
	if e, start := f.get(k, t0.Add(30*time.Second)); start || len(e.stacks) != 1 {
		t.Fatalf("a fresh sample: start %v, %+v", start, e)
	}
	if e, start := f.get(k, t0.Add(2*time.Minute)); !start || len(e.stacks) != 1 {
		t.Fatalf("a stale sample is served while a new one is taken: start %v, %+v", start, e)
	}
	f.put(k, nil, t0.Add(2*time.Minute)) // the new sample failed: the old stays
	other := flameKey{"job", "w", 0}
	f.get(other, t0.Add(20*time.Minute))
	f.mu.Lock()
	_, kept := f.m[k]
	f.mu.Unlock()
	if kept {
		t.Error("a view no one asked for in 10 minutes is kept")
	}
	for i := range 2 * maxFlameEntries {
		f.get(flameKey{"job", "v", i}, t0.Add(30*time.Minute))
		f.put(flameKey{"job", "v", i}, nil, t0.Add(30*time.Minute))
	}
	if n := len(f.m); n > maxFlameEntries {
		t.Errorf("%d views kept, want at most %d", n, maxFlameEntries)
	}
}
