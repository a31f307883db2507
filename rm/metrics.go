package rm

import (
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loom-project/loom/proto/yarnpb"
)

// metrics are the RM's Prometheus metrics, on a registry of its own (a
// process may run several RMs, as the tests do). What the state holds is
// read at scrape time; the rest is counted as it happens.
type metrics struct {
	reg         *prometheus.Registry
	allocations prometheus.Counter
	plan        prometheus.Histogram
	commit      prometheus.Histogram
	heartbeat   prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loom_rm_allocations_total", Help: "Containers the scheduler placed, committed through raft.",
		}),
		plan: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loom_rm_scheduler_plan_seconds", Help: "Time to make one scheduling plan.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loom_rm_raft_commit_seconds", Help: "Time from proposing a command to raft until it is applied.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		heartbeat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loom_rm_node_heartbeat_seconds",
			Help:    "Time to answer one NodeManager heartbeat, from its decoding to its answer; waiting for a CPU before and sending after are not included.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
	}
	m.reg.MustRegister(m.allocations, m.plan, m.commit, m.heartbeat, stateCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// observeHeartbeat records how long answering a heartbeat took.
func (m *metrics) observeHeartbeat(start time.Time) {
	m.heartbeat.Observe(time.Since(start).Seconds())
}

// observeCommit records how long a raft commit took.
func (m *metrics) observeCommit(start time.Time) { m.commit.Observe(time.Since(start).Seconds()) }

var (
	descApps       = prometheus.NewDesc("loom_rm_applications", "Applications the RM's state holds, by state.", []string{"state"}, nil)
	descNodes      = prometheus.NewDesc("loom_rm_nodes", "NodeManagers the RM's state holds, by state.", []string{"state"}, nil)
	descContainers = prometheus.NewDesc("loom_rm_containers", "Containers the RM's state holds, by state.", []string{"state"}, nil)
	descResources  = prometheus.NewDesc("loom_rm_resources", "The live nodes' resources: memory in MB and vcores, total and used.", []string{"resource", "kind"}, nil)
	descLeader     = prometheus.NewDesc("loom_rm_raft_leader", "1 on the replica that leads the raft cluster, else 0.", nil, nil)
	descApplied    = prometheus.NewDesc("loom_rm_raft_applied_index", "The raft index of the last command this replica applied.", nil, nil)
	descPeers      = prometheus.NewDesc("loom_rm_raft_peers", "Replicas in the raft configuration, by suffrage.", []string{"suffrage"}, nil)
)

// stateCollector reads the state's counts at scrape time.
type stateCollector struct{ s *Server }

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descApps, descNodes, descContainers, descResources, descLeader, descApplied, descPeers} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.s.State().Snapshot()
	apps := map[string]float64{}
	for _, st := range yarnpb.AppState_name {
		apps[st] = 0
	}
	for _, a := range r.Apps(nil) {
		apps[a.State.String()]++
	}
	for st, n := range apps {
		ch <- prometheus.MustNewConstMetric(descApps, prometheus.GaugeValue, n, st)
	}
	nodes := map[string]float64{}
	for _, st := range yarnpb.NodeState_name {
		nodes[st] = 0
	}
	var totalMB, usedMB, totalV, usedV float64
	for _, n := range r.Nodes() {
		nodes[n.State.String()]++
		if n.Live() {
			totalMB += float64(n.Total.MemoryMB)
			usedMB += float64(n.Used.MemoryMB)
			totalV += float64(n.Total.VCores)
			usedV += float64(n.Used.VCores)
		}
	}
	for st, n := range nodes {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, n, st)
	}
	containers := map[string]float64{}
	for _, st := range yarnpb.ContainerState_name {
		containers[st] = 0
	}
	live := r.LiveContainers()
	for _, ct := range live {
		containers[ct.State.String()]++
	}
	// The completed ones the state keeps (retention bounds them).
	containers[yarnpb.ContainerState_CONTAINER_COMPLETED.String()] = float64(r.Counts().Containers - len(live))
	for st, n := range containers {
		ch <- prometheus.MustNewConstMetric(descContainers, prometheus.GaugeValue, n, st)
	}
	ch <- prometheus.MustNewConstMetric(descResources, prometheus.GaugeValue, totalMB, "memory_mb", "total")
	ch <- prometheus.MustNewConstMetric(descResources, prometheus.GaugeValue, usedMB, "memory_mb", "used")
	ch <- prometheus.MustNewConstMetric(descResources, prometheus.GaugeValue, totalV, "vcores", "total")
	ch <- prometheus.MustNewConstMetric(descResources, prometheus.GaugeValue, usedV, "vcores", "used")
	leader := 0.0
	if c.s.isLeader.Load() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(c.s.fsm.AppliedIndex()))
	voters, nonvoters := 0.0, 0.0
	if f := c.s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			} else {
				nonvoters++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, voters, "voter")
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, nonvoters, "nonvoter")
}
