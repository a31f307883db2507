package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A trace survives being written and read back, and a bad one is refused
// with its line.
func TestTraceRoundTrip(t *testing.T) {
	c := config{apps: 20, queues: 4, arrival: time.Second, minC: 1, maxC: 9, containerMB: 512, minD: time.Second, maxD: 3 * time.Second, seed: 7}
	trace := syntheticTrace(c)
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := writeTrace(path, trace); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := readTrace(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(trace) {
		t.Fatalf("read %d of %d", len(back), len(trace))
	}
	for i := range trace {
		a, b := trace[i], back[i]
		if a.at.Milliseconds() != b.at.Milliseconds() || a.queue != b.queue || a.user != b.user || a.containers != b.containers || a.run.Milliseconds() != b.run.Milliseconds() {
			t.Fatalf("application %d: %+v, read back %+v", i, a, b)
		}
	}
	bad := traceHeader + "\n10,q1,u1,3,512,1,1000\n20,q1,u1,-3,512,1,1000\n"
	if _, err := readTrace(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "trace line 3") {
		t.Fatalf("a negative count: %v", err)
	}
}

// The simulator end to end at a small scale, against a real `loom rm`:
// every application runs its containers and finishes, heartbeats are
// answered, and the report, samples and plot are written.
func TestSimulatesASmallCluster(t *testing.T) {
	bin, _ := filepath.Abs("../../bin/loom")
	if _, err := os.Stat(bin); err != nil {
		bin = "" // built by the run
	}
	out := t.TempDir()
	c := config{loom: bin, nodes: 40, nodeMemoryMB: 4096, nodeVCores: 4, heartbeat: 200 * time.Millisecond, queues: 4, apps: 8, arrival: 500 * time.Millisecond,
		minC: 2, maxC: 6, containerMB: 512, minD: 300 * time.Millisecond, maxD: time.Second, duration: 10 * time.Second, out: out, seed: 1, preemption: true, nodesPerConn: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, c); err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"applications: 8 submitted (0 refused), 8 finished, 0 AMs failed", "NodeManager heartbeats: ", "after each node's first 5: p50", "the RM's time to answer one", "raft commits the RM waited for", "containers placed end to end", "ResourceManager: CPU"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(string(report), "last error") {
		t.Errorf("the run had errors:\n%s", report)
	}
	img, err := os.ReadFile(filepath.Join(out, "shares.png"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(img)); err != nil || cfg.Width != 1100 {
		t.Errorf("shares.png: %+v, %v", cfg, err)
	}
	if samples, _ := os.ReadFile(filepath.Join(out, "samples.csv")); strings.Count(string(samples), "\n") < 10 {
		t.Errorf("samples.csv:\n%s", samples)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	text := `# HELP x_seconds x
# TYPE x_seconds histogram
x_seconds_bucket{le="0.001"} 50
x_seconds_bucket{le="0.002"} 90
x_seconds_bucket{le="0.004"} 100
x_seconds_bucket{le="+Inf"} 100
x_seconds_sum 0.1
x_seconds_count 100
`
	q, ok := histogramQuantiles(text, "x_seconds", 0.5, 0.7, 0.99)
	if !ok {
		t.Fatal("the histogram was not found")
	}
	want := []time.Duration{time.Millisecond, 1500 * time.Microsecond, 3800 * time.Microsecond}
	for i := range want {
		if d := q[i] - want[i]; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("quantile %d: %s, want %s", i, q[i], want[i])
		}
	}
	if _, ok := histogramQuantiles(text, "y_seconds", 0.5); ok {
		t.Error("an absent histogram was found")
	}
}
