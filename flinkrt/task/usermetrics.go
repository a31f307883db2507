package task

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on a subtask's user metrics, which travel with its counts.
const (
	MaxUserMetrics       = 256
	MaxUserMetricNameLen = 200
	MaxHistogramWindow   = 100_000
	// meterSpan is the time a meter's rate is averaged over, as Flink's
	// MeterView's default.
	meterSpan = 60 * time.Second
)

// histogramFields are the values a histogram reports, with the suffix
// Flink's metric store gives each.
var histogramFields = []string{"_min", "_max", "_mean", "_median", "_stddev", "_p75", "_p90", "_p95", "_p98", "_p99", "_p999"}

// UserMetrics are the metrics a subtask's functions register (Flink's
// operator metric group): counters, gauges, meters and histograms, each
// named "<operator>.<group…>.<name>" after Flink's operator scope.
type UserMetrics struct {
	mu sync.Mutex
	m  map[string]*userMetric
}

type metricKind int

const (
	counterMetric metricKind = iota
	gaugeMetric
	meterMetric
	histogramMetric
)

func (k metricKind) String() string {
	return [...]string{"counter", "gauge", "meter", "histogram"}[k]
}

type userMetric struct {
	kind  metricKind
	count atomic.Int64
	gauge func() float64
	hist  *Histogram
	// marks are a meter's counts at its last reports, oldest first, to
	// average its rate over meterSpan.
	marks []mark
}

type mark struct {
	at    time.Time
	count int64
}

// MetricName is name with Flink's replacements for its metric store:
// space, '.', ':' and ',' become '_'.
func MetricName(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '.', ':', ',':
			return '_'
		}
		return r
	}, name)
}

func (u *UserMetrics) register(name string, kind metricKind, init func(*userMetric)) (*userMetric, error) {
	if len(name) > MaxUserMetricNameLen || strings.HasSuffix(name, ".") || name == "" {
		return nil, fmt.Errorf("metric %q: want a name of 1 to %d bytes", name, MaxUserMetricNameLen)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if m, ok := u.m[name]; ok {
		if m.kind != kind {
			return nil, fmt.Errorf("metric %q is a %s already", name, m.kind)
		}
		return m, nil
	}
	if len(u.m) >= MaxUserMetrics {
		return nil, fmt.Errorf("metric %q: a subtask has at most %d", name, MaxUserMetrics)
	}
	if u.m == nil {
		u.m = map[string]*userMetric{}
	}
	m := &userMetric{kind: kind}
	if init != nil {
		init(m)
	}
	u.m[name] = m
	return m, nil
}

// Counter returns the counter called name, made on first use.
func (u *UserMetrics) Counter(name string) (*atomic.Int64, error) {
	m, err := u.register(name, counterMetric, nil)
	if err != nil {
		return nil, err
	}
	return &m.count, nil
}

// Meter returns the events counter of the meter called name, whose
// reported value is its rate per second over the last minute.
func (u *UserMetrics) Meter(name string) (*atomic.Int64, error) {
	m, err := u.register(name, meterMetric, nil)
	if err != nil {
		return nil, err
	}
	return &m.count, nil
}

// Gauge registers fn as the gauge called name; fn is called from another
// goroutine than the subtask's whenever the metrics are reported, so it
// must read what it reports safely (an atomic, say). A second Gauge of
// one name replaces the first's function.
func (u *UserMetrics) Gauge(name string, fn func() float64) error {
	if fn == nil {
		return fmt.Errorf("gauge %q: no function", name)
	}
	m, err := u.register(name, gaugeMetric, nil)
	if err != nil {
		return err
	}
	u.mu.Lock()
	m.gauge = fn
	u.mu.Unlock()
	return nil
}

// Histogram returns the histogram called name over the last window
// values it is given (Flink's DescriptiveStatisticsHistogram).
func (u *UserMetrics) Histogram(name string, window int) (*Histogram, error) {
	if window < 1 || window > MaxHistogramWindow {
		return nil, fmt.Errorf("histogram %q: want a window of 1 to %d values, not %d", name, MaxHistogramWindow, window)
	}
	m, err := u.register(name, histogramMetric, func(m *userMetric) { m.hist = &Histogram{window: make([]int64, 0, min(window, 1024)), size: window} })
	if err != nil {
		return nil, err
	}
	return m.hist, nil
}

// Values are the metrics' values at now by their reported names (a
// histogram's with Flink's suffixes), nil when there are none. A gauge
// that panics or answers NaN is left out.
func (u *UserMetrics) Values(now time.Time) map[string]float64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) == 0 {
		return nil
	}
	out := make(map[string]float64, len(u.m))
	for name, m := range u.m {
		switch m.kind {
		case counterMetric:
			out[name] = float64(m.count.Load())
		case gaugeMetric:
			if v, ok := callGauge(m.gauge); ok {
				out[name] = v
			}
		case meterMetric:
			out[name] = m.rate(now)
		case histogramMetric:
			for i, v := range m.hist.stats() {
				out[name+histogramFields[i]] = v
			}
		}
	}
	return out
}

func callGauge(fn func() float64) (v float64, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	v = fn()
	return v, !math.IsNaN(v) && !math.IsInf(v, 0)
}

// rate is the meter's events per second since its oldest mark within
// meterSpan; it records now's count as a mark.
func (m *userMetric) rate(now time.Time) float64 {
	c := m.count.Load()
	m.marks = append(m.marks, mark{now, c})
	i := 0
	for i < len(m.marks)-1 && now.Sub(m.marks[i+1].at) >= meterSpan {
		i++
	}
	m.marks = m.marks[i:]
	first := m.marks[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(c-first.count) / dt
}

// Histogram keeps the last values it was given, to report their
// statistics.
type Histogram struct {
	mu     sync.Mutex
	window []int64
	next   int
	size   int
	count  int64
}

// Update adds a value.
func (h *Histogram) Update(v int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count++
	if len(h.window) < h.size {
		h.window = append(h.window, v)
		return
	}
	h.window[h.next] = v
	h.next = (h.next + 1) % h.size
}

// Count is the number of values ever given.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// stats are min, max, mean, median, stddev (of the sample) and the 75th
// to 99.9th percentiles of the window, in histogramFields' order, with
// the percentile estimate Flink's histogram uses (commons-math's
// default); all zero when it is empty.
func (h *Histogram) stats() []float64 {
	h.mu.Lock()
	vs := slices.Clone(h.window)
	h.mu.Unlock()
	out := make([]float64, len(histogramFields))
	if len(vs) == 0 {
		return out
	}
	slices.Sort(vs)
	sum := 0.0
	for _, v := range vs {
		sum += float64(v)
	}
	mean := sum / float64(len(vs))
	var sq float64
	for _, v := range vs {
		sq += (float64(v) - mean) * (float64(v) - mean)
	}
	stddev := 0.0
	if len(vs) > 1 {
		stddev = math.Sqrt(sq / float64(len(vs)-1))
	}
	out[0], out[1], out[2], out[3], out[4] = float64(vs[0]), float64(vs[len(vs)-1]), mean, Percentile(vs, 50), stddev
	for i, p := range []float64{75, 90, 95, 98, 99, 99.9} {
		out[5+i] = Percentile(vs, p)
	}
	return out
}

// Percentile is commons-math's default estimate (the one Flink uses) of
// the p-th percentile of sorted values: the position p/100 × (n+1),
// interpolated.
func Percentile(sorted []int64, p float64) float64 {
	n := float64(len(sorted))
	pos := p / 100 * (n + 1)
	switch {
	case pos < 1:
		return float64(sorted[0])
	case pos >= n:
		return float64(sorted[len(sorted)-1])
	}
	lo := math.Floor(pos)
	d := pos - lo
	a, b := float64(sorted[int(lo)-1]), float64(sorted[int(lo)])
	return a + d*(b-a)
}
