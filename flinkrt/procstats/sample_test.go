package procstats

import (
	"context"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

//go:noinline
func waitingTask(ch chan struct{}) { <-ch }

//go:noinline
func busyTask(stop *atomic.Bool) {
	x := 0
	for !stop.Load() {
		x++
	}
	_ = x
}

// A sample holds the stacks of the vertex's labelled goroutines only,
// outermost frame first, each marked parked (off CPU) or not.
func TestSampleTasks(t *testing.T) {
	ch := make(chan struct{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	labelled := func(job, vertex, subtask string, fn func()) {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels(LabelJob, job, LabelVertex, vertex, LabelSubtask, subtask), func(context.Context) {
			defer wg.Done()
			fn()
		})
	}
	labelled("j1", "2", "0", func() { waitingTask(ch) })
	labelled("j1", "2", "1", func() { busyTask(&stop) })
	labelled("j1", "3", "0", func() { waitingTask(ch) }) // another vertex
	labelled("j2", "2", "0", func() { waitingTask(ch) }) // another job
	defer func() {
		stop.Store(true)
		close(ch)
		wg.Wait()
	}()
	// The goroutines reach their loops.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := SampleTasks(context.Background(), "j1", 2, nil, 1, 0, 64)
		all := ""
		for _, st := range s.Stacks {
			all += strings.Join(st.Frames, ";") + "\n"
		}
		if strings.Contains(all, "waitingTask") && strings.Contains(all, "busyTask") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tasks' goroutines never showed:\n%s", all)
		}
	}

	resp := SampleTasks(context.Background(), "j1", 2, nil, 5, time.Millisecond, 64)
	if resp.Samples != 5 {
		t.Fatalf("%d samples, want 5", resp.Samples)
	}
	var waits, busy int64
	for _, s := range resp.Stacks {
		stack := strings.Join(s.Frames, ";")
		switch {
		case strings.Contains(stack, "waitingTask"):
			waits += s.Count
			if !s.Parked || !strings.HasPrefix(s.Frames[len(s.Frames)-1], "runtime.gopark") {
				t.Errorf("a goroutine waiting on a channel is not parked: %v", s.Frames)
			}
		case strings.Contains(stack, "busyTask"):
			busy += s.Count
			if s.Parked {
				t.Errorf("a spinning goroutine is parked: %v", s.Frames)
			}
		default:
			t.Errorf("a stack of another goroutine: %v", s.Frames)
		}
		if !strings.Contains(s.Frames[0], "runtime.goexit") && !strings.Contains(s.Frames[0], "pprof.Do") {
			t.Errorf("frames not outermost first: %v", s.Frames)
		}
	}
	if waits != 5 || busy != 5 {
		t.Errorf("seen waiting %d and busy %d times in 5 samples, want 5 each (job j1, vertex 2 only)", waits, busy)
	}
	one := SampleTasks(context.Background(), "j1", 2, []int32{1}, 2, time.Millisecond, 64)
	for _, s := range one.Stacks {
		if strings.Contains(strings.Join(s.Frames, ";"), "waitingTask") {
			t.Errorf("subtask 0's stack in subtask 1's sample: %v", s.Frames)
		}
	}
	if len(one.Stacks) == 0 {
		t.Error("no stack of subtask 1")
	}
}

func TestParseProfileIgnoresJunk(t *testing.T) {
	got := parseProfile([]byte("goroutine profile: total 2\nx @ 0x1\n3 @ 0x10 0x20\n# labels: {\"a\":\"b\", \"c\":\"d\\\"\"}\n#\t0x10\tf+0x1\t/f.go:1\n\n# labels: {}\n"))
	if len(got) != 1 || got[0].count != 3 || got[0].labels["a"] != "b" || got[0].labels["c"] != `d\"` {
		t.Fatalf("parsed %+v", got)
	}
	if symbolize("0xzz", 10) != nil {
		t.Error("bad PCs symbolized")
	}
}
