package nm

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loom-project/loom/proto/yarnpb"
)

// nmMetrics are a NodeManager's Prometheus metrics, on a registry of its
// own: its containers by state and their resources read at scrape time,
// launches and localization counted as they happen.
type nmMetrics struct {
	reg          *prometheus.Registry
	launches     prometheus.Counter
	launchFails  prometheus.Counter
	localization prometheus.Histogram
}

func newNMMetrics(n *NodeManager) *nmMetrics {
	m := &nmMetrics{
		reg: prometheus.NewRegistry(),
		launches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loom_nm_container_launches_total", Help: "Containers whose process this NodeManager started.",
		}),
		launchFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loom_nm_container_launch_failures_total", Help: "Containers that could not be started (localization or exec failed).",
		}),
		localization: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loom_nm_localization_seconds", Help: "Time to fetch a container's local resources into its work dir.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	m.reg.MustRegister(m.launches, m.launchFails, m.localization, containerCollector{n},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *nmMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// localized records a localization's time, and a failure to launch.
func (m *nmMetrics) localized(began time.Time, err error) {
	if m == nil {
		return
	}
	m.localization.Observe(time.Since(began).Seconds())
	if err != nil {
		m.launchFails.Inc()
	}
}

// started records a container process started, or one that failed to.
func (m *nmMetrics) started(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.launchFails.Inc()
		return
	}
	m.launches.Inc()
}

var (
	descNMContainers = prometheus.NewDesc("loom_nm_containers", "Containers this NodeManager holds, by state.", []string{"state"}, nil)
	descNMResources  = prometheus.NewDesc("loom_nm_resources", "This node's resources: memory in MB and vcores, total and used by its containers.", []string{"resource", "kind"}, nil)
)

type containerCollector struct{ n *NodeManager }

func (containerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNMContainers
	ch <- descNMResources
}

func (c containerCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]float64{}
	for _, st := range yarnpb.ContainerState_name {
		counts[st] = 0
	}
	var usedMB, usedV float64
	for _, ct := range c.n.exec.all() {
		ct.mu.Lock()
		st := ct.state
		ct.mu.Unlock()
		counts[st.String()]++
		if st != yarnpb.ContainerState_CONTAINER_COMPLETED {
			usedMB += float64(ct.res.GetMemoryMb())
			usedV += float64(ct.res.GetVcores())
		}
	}
	for st, v := range counts {
		ch <- prometheus.MustNewConstMetric(descNMContainers, prometheus.GaugeValue, v, st)
	}
	ch <- prometheus.MustNewConstMetric(descNMResources, prometheus.GaugeValue, float64(c.n.cfg.MemoryMB), "memory_mb", "total")
	ch <- prometheus.MustNewConstMetric(descNMResources, prometheus.GaugeValue, usedMB, "memory_mb", "used")
	ch <- prometheus.MustNewConstMetric(descNMResources, prometheus.GaugeValue, float64(c.n.cfg.VCores), "vcores", "total")
	ch <- prometheus.MustNewConstMetric(descNMResources, prometheus.GaugeValue, usedV, "vcores", "used")
}
