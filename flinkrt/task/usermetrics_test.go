package task

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestUserCounterAndGauge(t *testing.T) {
	var u UserMetrics
	if u.Values(time.Now()) != nil {
		t.Fatal("no metrics should report nil")
	}
	c, err := u.Counter("op.seen")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(41)
	again, _ := u.Counter("op.seen")
	again.Add(1)
	if err := u.Gauge("op.depth", func() float64 { return 7.5 }); err != nil {
		t.Fatal(err)
	}
	if err := u.Gauge("op.broken", func() float64 { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := u.Gauge("op.nan", func() float64 { return math.NaN() }); err != nil {
		t.Fatal(err)
	}
	got := u.Values(time.Now())
	if got["op.seen"] != 42 || got["op.depth"] != 7.5 || len(got) != 2 {
		t.Fatalf("values %v: want op.seen 42 and op.depth 7.5 only (a panicking or NaN gauge is left out)", got)
	}
}

// A meter reports its events per second over the last minute.
func TestMeterRate(t *testing.T) {
	var u UserMetrics
	m, err := u.Meter("op.rate")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	if r := u.Values(t0)["op.rate"]; r != 0 {
		t.Fatalf("first rate %v, want 0", r)
	}
	m.Add(100)
	if r := u.Values(t0.Add(10 * time.Second))["op.rate"]; r != 10 {
		t.Fatalf("100 events in 10 s: rate %v, want 10", r)
	}
	// 70 s on, the marks older than a minute are dropped: 600 more
	// events in the last 60 s.
	u.Values(t0.Add(20 * time.Second))
	m.Add(600)
	if r := u.Values(t0.Add(80 * time.Second))["op.rate"]; r != 10 {
		t.Fatalf("600 events in the last 60 s: rate %v, want 10", r)
	}
	if n := len(u.m["op.rate"].marks); n > 3 {
		t.Errorf("the meter keeps %d marks, want those within a minute", n)
	}
}

// A histogram reports Flink's statistics of its window, with
// commons-math's percentiles.
func TestHistogramStatistics(t *testing.T) {
	var u UserMetrics
	h, err := u.Histogram("op.latency", 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 100; i++ {
		h.Update(1000 + i) // pushed out of the window by the next 100
	}
	for i := int64(1); i <= 100; i++ {
		h.Update(i)
	}
	got := u.Values(time.Now())
	want := map[string]float64{
		"op.latency_min": 1, "op.latency_max": 100, "op.latency_mean": 50.5, "op.latency_median": 50.5,
		"op.latency_p75": 75.75, "op.latency_p90": 90.9, "op.latency_p95": 95.95, "op.latency_p98": 98.98,
		"op.latency_p99": 99.99, "op.latency_p999": 100,
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if sd := got["op.latency_stddev"]; math.Abs(sd-29.011491975882016) > 1e-9 {
		t.Errorf("stddev %v, want 29.0115 (of the sample)", sd)
	}
	if h.Count() != 200 {
		t.Errorf("count %d, want 200", h.Count())
	}
}

func TestUserMetricBounds(t *testing.T) {
	var u UserMetrics
	for _, bad := range []string{"", strings.Repeat("x", MaxUserMetricNameLen+1), "op."} {
		if _, err := u.Counter(bad); err == nil {
			t.Errorf("counter %q accepted", bad)
		}
	}
	if _, err := u.Counter("op.x"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Meter("op.x"); err == nil || !strings.Contains(err.Error(), "is a counter") {
		t.Errorf("a meter over a counter's name: %v", err)
	}
	for _, w := range []int{0, MaxHistogramWindow + 1} {
		if _, err := u.Histogram("op.h", w); err == nil {
			t.Errorf("histogram window %d accepted", w)
		}
	}
	if err := u.Gauge("op.g", nil); err == nil {
		t.Error("a gauge without a function accepted")
	}
	for i := 1; i < MaxUserMetrics; i++ {
		if _, err := u.Counter(fmt.Sprintf("op.c%d", i)); err != nil {
			t.Fatalf("metric %d: %v", i+1, err)
		}
	}
	if _, err := u.Counter("op.one-too-many"); err == nil {
		t.Errorf("metric %d accepted", MaxUserMetrics+1)
	}
}

func TestMetricName(t *testing.T) {
	if got := MetricName("Source: cars, 1.x"); got != "Source__cars__1_x" {
		t.Errorf("MetricName = %q, want Flink's Source__cars__1_x", got)
	}
}
