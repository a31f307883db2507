package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/loom-project/loom/rm/rmclient"
)

// sample is the simulation at one moment.
type sample struct {
	t          time.Duration // since the first submission
	allocated  int64         // containers handed to AMs so far
	asked      int64         // containers asked for so far
	submitted  int64         // applications submitted so far
	ams        int64         // AMs registered so far
	heartbeats int64         // heartbeats answered so far
	usedMB     int64         // memory the nodes run
	usedVC     int64         // vcores the nodes run
	rmCPU      float64       // the RM's CPU seconds so far
	rmRSS      int64
	simCPU     float64 // this process's
	// shares are each queue's memory as a share of the cluster's, and
	// pending whether it still asks for more; nil between queue polls.
	shares  map[string]float64
	pending map[string]bool
}

type report struct {
	c          config
	capacities map[string]float64
	queues     []string
	apps       int
	mu         sync.Mutex
	samples    []sample
	lines      []string
	// rmMetrics is the RM's Prometheus metrics at the end, as text.
	rmMetrics string
}

func newReport(c config, capacities map[string]float64, trace []arrival) *report {
	r := &report{c: c, capacities: capacities, apps: len(trace)}
	for q := range capacities {
		r.queues = append(r.queues, q)
	}
	slices.Sort(r.queues)
	return r
}

// sampler records a sample every 250 ms, with the queues' shares every
// second.
type sampler struct {
	s      *sim
	rm     *rmProcess
	rep    *report
	cancel context.CancelFunc
}

func newSampler(s *sim, rm *rmProcess, rep *report) *sampler {
	return &sampler{s: s, rm: rm, rep: rep}
}

func (sp *sampler) start(ctx context.Context) <-chan struct{} {
	ctx, sp.cancel = context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		admin, err := sp.s.pki.user(adminUser)
		if err != nil {
			sp.s.fail(err)
			return
		}
		cl, err := rmclient.New([]string{sp.rm.addr}, admin)
		if err != nil {
			sp.s.fail(err)
			return
		}
		defer cl.Close()
		totalMB := float64(int64(sp.s.c.nodes) * sp.s.c.nodeMemoryMB)
		totalVC := float64(sp.s.c.nodes * sp.s.c.nodeVCores)
		began := time.Now()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cpu, rss, _, _ := procStats(sp.rm.pid())
			self, _, _, _ := procStats(os.Getpid())
			smp := sample{t: time.Since(began), allocated: sp.s.allocated.Load(), asked: sp.s.asked.Load(), submitted: sp.s.submitted.Load(), ams: sp.s.registered.Load(), heartbeats: sp.s.heartbeats.n.Load(), usedMB: sp.s.usedMB.Load(), usedVC: sp.s.usedVC.Load(), rmCPU: cpu, rmRSS: rss, simCPU: self}
			if i%4 == 3 {
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				qs, err := cl.Queues(qctx, "")
				cancel()
				if err == nil {
					smp.shares, smp.pending = map[string]float64{}, map[string]bool{}
					for _, q := range qs {
						// The dominant share: the larger of
						// memory and vcores.
						smp.shares[q.Name] = max(float64(q.Used.GetMemoryMb())/totalMB, float64(q.Used.GetVcores())/totalVC)
						smp.pending[q.Name] = q.Pending.GetMemoryMb() > 0
					}
				}
			}
			if float64(smp.usedMB) >= 0.95*totalMB || float64(smp.usedVC) >= 0.95*totalVC {
				sp.s.isSaturated.Store(true)
			}
			sp.rep.mu.Lock()
			sp.rep.samples = append(sp.rep.samples, smp)
			sp.rep.mu.Unlock()
		}
	}()
	return done
}

func (sp *sampler) stop() { sp.cancel() }

func (r *report) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.lines = append(r.lines, line)
	fmt.Println(line)
}

// finish computes the figures from the samples.
func (r *report) finish(s *sim, rm *rmProcess, start time.Time) {
	r.mu.Lock()
	samples := slices.Clone(r.samples)
	r.mu.Unlock()
	c := r.c
	totalMB := int64(c.nodes) * c.nodeMemoryMB
	totalVC := int64(c.nodes * c.nodeVCores)
	// full is whether the cluster is 95% used, in memory or vcores.
	full := func(smp sample) bool {
		return float64(smp.usedMB) >= 0.95*float64(totalMB) || float64(smp.usedVC) >= 0.95*float64(totalVC)
	}
	r.printf("loom scheduler load simulation: %d NodeManagers (%d MB, %d vcores each, heartbeat %s), %d applications over %d queues, %s",
		c.nodes, c.nodeMemoryMB, c.nodeVCores, c.heartbeat, r.apps, len(r.queues), time.Since(start).Round(time.Second))
	r.printf("applications: %d submitted (%d refused), %d finished, %d AMs failed", s.submitted.Load(), s.submitErrors.Load(), s.finished.Load(), s.amErrors.Load())
	if e, _ := s.lastErr.Load().(string); e != "" {
		r.printf("last error: %s", e)
	}
	if len(samples) < 2 {
		r.printf("too few samples")
		return
	}
	first, last := samples[0], samples[len(samples)-1]
	secs := (last.t - first.t).Seconds()
	p := s.heartbeats.percentiles(0.5, 0.99, 0.999, 1)
	r.printf("NodeManager heartbeats: %.0f/s answered; round trip p50 %s, p99 %s, p99.9 %s, max %s",
		float64(last.heartbeats-first.heartbeats)/secs, ms(p[0]), ms(p[1]), ms(p[2]), ms(p[3]))
	if s.steady.n.Load() > 0 {
		p = s.steady.percentiles(0.5, 0.99, 0.999, 1)
		r.printf("  after each node's first %d: p50 %s, p99 %s, p99.9 %s, max %s", warmupBeats, ms(p[0]), ms(p[1]), ms(p[2]), ms(p[3]))
	}
	if s.saturated.n.Load() > 0 {
		p = s.saturated.percentiles(0.5, 0.99, 0.999, 1)
		r.printf("  once the cluster was 95%% full: p50 %s, p99 %s, p99.9 %s, max %s", ms(p[0]), ms(p[1]), ms(p[2]), ms(p[3]))
	}
	// The RM's own account: a round trip far above the RM's time to
	// answer is time waiting for a CPU, on either side, or in transit.
	if r.rmMetrics != "" {
		if q, ok := histogramQuantiles(r.rmMetrics, "loom_rm_node_heartbeat_seconds", 0.5, 0.99); ok {
			r.printf("  the RM's time to answer one (loom_rm_node_heartbeat_seconds): p50 %s, p99 %s", ms(q[0]), ms(q[1]))
		}
		if q, ok := histogramQuantiles(r.rmMetrics, "loom_rm_raft_commit_seconds", 0.5, 0.99); ok {
			r.printf("raft commits the RM waited for (loom_rm_raft_commit_seconds): p50 %s, p99 %s", ms(q[0]), ms(q[1]))
		}
		if q, ok := histogramQuantiles(r.rmMetrics, "loom_rm_scheduler_plan_seconds", 0.5, 0.99); ok {
			r.printf("scheduling passes (loom_rm_scheduler_plan_seconds): %.0f/s, p50 %s, p99 %s",
				float64(histogramCount(r.rmMetrics, "loom_rm_scheduler_plan_seconds"))/secs, ms(q[0]), ms(q[1]))
		}
	}

	// Placement: from the first ask until 95% of the cluster runs, and
	// the best second.
	var fillAt time.Duration
	var fillCount int64
	for _, smp := range samples {
		if full(smp) {
			fillAt, fillCount = smp.t, smp.allocated
			break
		}
	}
	askAt := time.Duration(0)
	if ns := s.firstAsk.Load(); ns > 0 {
		askAt = time.Unix(0, ns).Sub(start)
	}
	best := 0.0
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			if d := samples[j].t - samples[i].t; d >= time.Second {
				best = max(best, float64(samples[j].allocated-samples[i].allocated)/d.Seconds())
				break
			}
		}
	}
	if fillAt > askAt {
		r.printf("containers placed end to end (Allocate -> placement -> raft commit -> handed to the AM): %d in %s from the first ask to 95%% of the cluster: %.0f/s; best second %.0f/s; %d in all",
			fillCount, (fillAt - askAt).Round(time.Millisecond), float64(fillCount)/(fillAt-askAt).Seconds(), best, last.allocated)
	} else {
		r.printf("containers placed end to end: %d in all; best second %.0f/s; the cluster never reached 95%% use", last.allocated, best)
	}
	var peakCPU float64
	for i := 4; i < len(samples); i++ {
		peakCPU = max(peakCPU, (samples[i].rmCPU-samples[i-4].rmCPU)/(samples[i].t-samples[i-4].t).Seconds())
	}
	_, _, peakRSS, _ := procStats(rm.pid())
	r.printf("ResourceManager: CPU %.2f cores on average, %.2f at its busiest second; RSS %d MiB at the end, %d MiB at its peak",
		(last.rmCPU-first.rmCPU)/secs, peakCPU, last.rmRSS>>20, peakRSS>>20)
	r.printf("the simulator itself (same machine): CPU %.2f cores on average", (last.simCPU-first.simCPU)/secs)

	// Shares while saturated: the cluster at least 95% used and every
	// queue still asking.
	sum := map[string]float64{}
	n := 0
	var from, to time.Duration
	var saturated []sample
	for _, smp := range samples {
		if smp.shares == nil || !full(smp) {
			continue
		}
		all := true
		for _, q := range r.queues {
			all = all && smp.pending[q]
		}
		if !all {
			continue
		}
		if n == 0 {
			from = smp.t
		}
		to = smp.t
		n++
		saturated = append(saturated, smp)
		for _, q := range r.queues {
			sum[q] += smp.shares[q]
		}
	}
	if n == 0 {
		r.printf("queue shares: the cluster was never saturated with every queue asking for more")
		return
	}
	r.printf("queue shares while saturated (%d samples, %s to %s):", n, from.Round(time.Second), to.Round(time.Second))
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "queue\tcapacity\tmean share\tdifference\trelative")
	worst := 0.0
	for _, q := range r.queues {
		share := sum[q] / float64(n)
		diff := share - r.capacities[q]
		rel := diff / r.capacities[q]
		worst = max(worst, math.Abs(rel))
		fmt.Fprintf(tw, "%s\t%.1f%%\t%.1f%%\t%+.1f pp\t%+.1f%%\n", q, 100*r.capacities[q], 100*share, 100*diff, 100*rel)
	}
	tw.Flush()
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		r.printf("  %s", l)
	}
	r.printf("worst queue: %.1f%% from its capacity", 100*worst)

	// Settled: from the first saturated sample after which every queue
	// stays within settleWithin of its capacity, what preemption gave
	// back to the queues the first arrivals left short.
	off := func(smp sample) float64 {
		w := 0.0
		for _, q := range r.queues {
			w = max(w, math.Abs(smp.shares[q]-r.capacities[q])/r.capacities[q])
		}
		return w
	}
	settled := len(saturated)
	for settled > 0 && off(saturated[settled-1]) <= settleWithin {
		settled--
	}
	if settled == len(saturated) {
		r.printf("queue shares never settled within %.0f%% of every capacity", 100*settleWithin)
		return
	}
	worst = 0
	for _, smp := range saturated[settled:] {
		worst = max(worst, off(smp))
	}
	r.printf("settled: every queue within %.0f%% of its capacity from %s on (%s after saturation, %d samples), at worst %.1f%% from it",
		100*settleWithin, saturated[settled].t.Round(time.Second), (saturated[settled].t - from).Round(time.Second), len(saturated)-settled, 100*worst)
}

// settleWithin is how near its capacity a queue counts as settled: the
// bound a queue's share is held to once the cluster is saturated.
const settleWithin = 0.05

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// write saves the report, the samples and the plot of the shares.
func (r *report) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(strings.Join(r.lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("t_s,allocated,asked,submitted,ams,heartbeats,used_mb,used_vcores,rm_cpu_s,rm_rss_bytes")
	for _, q := range r.queues {
		b.WriteString("," + q)
	}
	b.WriteString("\n")
	for _, smp := range r.samples {
		fmt.Fprintf(&b, "%.3f,%d,%d,%d,%d,%d,%d,%d,%.2f,%d", smp.t.Seconds(), smp.allocated, smp.asked, smp.submitted, smp.ams, smp.heartbeats, smp.usedMB, smp.usedVC, smp.rmCPU, smp.rmRSS)
		for _, q := range r.queues {
			if smp.shares != nil {
				fmt.Fprintf(&b, ",%.4f", smp.shares[q])
			} else {
				b.WriteString(",")
			}
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.csv"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	var series []plotSeries
	for _, q := range r.queues {
		ps := plotSeries{name: q, target: r.capacities[q]}
		for _, smp := range r.samples {
			if smp.shares != nil {
				ps.t = append(ps.t, smp.t.Seconds())
				ps.v = append(ps.v, smp.shares[q])
			}
		}
		series = append(series, ps)
	}
	png := filepath.Join(dir, "shares.png")
	if err := plotShares(png, "each queue's share of the cluster (solid) against its capacity (dashed)", series); err != nil {
		return err
	}
	fmt.Printf("report, samples and plot in %s\n", dir)
	return nil
}

// histogramCount is how many observations a Prometheus histogram holds
// in its text exposition; 0 when it is absent.
func histogramCount(text, name string) uint64 {
	h := histogramOf(text, name)
	if h == nil {
		return 0
	}
	return h.GetSampleCount()
}

// histogramOf parses the first histogram called name out of a text
// exposition.
func histogramOf(text, name string) *dto.Histogram {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil || families[name] == nil || len(families[name].GetMetric()) == 0 {
		return nil
	}
	return families[name].GetMetric()[0].GetHistogram()
}

// histogramQuantiles estimates quantiles of a Prometheus histogram from
// its text exposition, interpolating within buckets as Prometheus's
// histogram_quantile does; false when the histogram is absent or empty.
func histogramQuantiles(text, name string, qs ...float64) ([]time.Duration, bool) {
	h := histogramOf(text, name)
	total := float64(h.GetSampleCount())
	if total == 0 {
		return nil, false
	}
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		rank := q * total
		lower, below := 0.0, 0.0
		v := lower
		for _, b := range h.GetBucket() {
			upper, n := b.GetUpperBound(), float64(b.GetCumulativeCount())
			if n >= rank {
				if !math.IsInf(upper, 1) && n > below {
					v = lower + (upper-lower)*(rank-below)/(n-below)
				}
				break
			}
			lower, below, v = upper, n, upper // beyond the last bound: say the bound
		}
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out, true
}
