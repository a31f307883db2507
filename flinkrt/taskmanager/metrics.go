package taskmanager

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/metricnames"
	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/proto/flinkpb"
)

// A TaskManager's Prometheus metrics (with Config.MetricsAddr), named and
// labelled as Flink's Prometheus reporter names a TaskManager's: each of
// its subtasks' counts as its worker last reported them, the metrics the
// job's functions registered, and its processes' runtime figures and
// slots. Rates are left to Prometheus (rate() of the counts): the
// JobManager's /metrics has Flink's PerSecond gauges.
var (
	tmTaskLabels = []string{"job_id", "job_name", "task_id", "task_name", "subtask_index", "task_attempt_num", "tm_id"}
	tmTaskDescs  = map[string]*prometheus.Desc{}

	tmHeapUsed = prometheus.NewDesc("flink_taskmanager_Status_JVM_Memory_Heap_Used", "Heap in use of the TaskManager's processes (its own and its job workers').", []string{"tm_id"}, nil)
	tmHeapCom  = prometheus.NewDesc("flink_taskmanager_Status_JVM_Memory_Heap_Committed", "Heap the TaskManager's processes obtained from the OS.", []string{"tm_id"}, nil)
	tmGCCount  = prometheus.NewDesc("flink_taskmanager_Status_JVM_GarbageCollector_Go_Count", "Garbage collections of the TaskManager's processes.", []string{"tm_id"}, nil)
	tmThreads  = prometheus.NewDesc("flink_taskmanager_Status_JVM_Threads_Count", "Goroutines of the TaskManager's processes.", []string{"tm_id"}, nil)
	tmCPUTime  = prometheus.NewDesc("flink_taskmanager_Status_JVM_CPU_Time", "CPU time, in nanoseconds, the TaskManager's processes used.", []string{"tm_id"}, nil)
	tmSlots    = prometheus.NewDesc("flink_taskmanager_Status_Slots", "The TaskManager's slots, free and total.", []string{"tm_id", "kind"}, nil)
)

func init() {
	for _, m := range metricnames.Task {
		if !m.Rate {
			tmTaskDescs[m.Name] = prometheus.NewDesc("flink_taskmanager_job_task_"+m.Name, "Flink's "+m.Name+" of a subtask, as its worker last reported.", tmTaskLabels, nil)
		}
	}
}

// serveMetrics serves /metrics on ln until the TaskManager stops: open to
// any reader on a loopback address, else to one that presents the
// deployment's web token ("Authorization: Bearer TOKEN"), as the
// JobManager's REST API.
func (tm *TaskManager) serveMetrics(ln net.Listener) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(tmCollector{tm}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	open := auth.IsLoopback(ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !open && !tm.cfg.Trust.CheckWebToken(strings.TrimSpace(tok)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="loom TaskManager"`)
			http.Error(w, "this TaskManager's metrics are not on a loopback address, so they need the deployment's web token: send it as \"Authorization: Bearer TOKEN\"", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	tm.wg.Add(1)
	go func() {
		defer tm.wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			tm.log.Error("metrics listener failed", "addr", ln.Addr(), "error", err)
		}
	}()
	return srv
}

// MetricsAddr is the address of the metrics listener, "" without one.
func (tm *TaskManager) MetricsAddr() string {
	if tm.metricsL == nil {
		return ""
	}
	return tm.metricsL.Addr().String()
}

type tmCollector struct{ tm *TaskManager }

func (tmCollector) Describe(chan<- *prometheus.Desc) {}

// jobView is what the collector reads of a job, copied under its lock.
type jobView struct {
	id, name string
	vertices [][2]string
	metrics  []*flinkpb.SubtaskMetrics
	stats    *flinkpb.ProcessStats
}

// Collect reads what the TaskManager keeps now. It describes nothing
// (an unchecked collector): the operator series' names are the jobs'.
func (c tmCollector) Collect(ch chan<- prometheus.Metric) {
	tm := c.tm
	tm.mu.Lock()
	jobs := make([]*job, 0, len(tm.jobs))
	for _, j := range tm.jobs {
		jobs = append(jobs, j)
	}
	free := 0
	for _, s := range tm.slots {
		if s.job == "" {
			free++
		}
	}
	total := len(tm.slots)
	tm.mu.Unlock()
	views := make([]jobView, 0, len(jobs))
	for _, j := range jobs {
		j.mu.Lock()
		views = append(views, jobView{j.id, j.name, j.vertices, j.metrics, j.stats})
		j.mu.Unlock()
	}

	st := procstats.Read()
	opDescs := map[string]*prometheus.Desc{}
	for _, v := range views {
		st = procstats.Add(st, v.stats)
		for _, m := range v.metrics {
			if m.Io == nil {
				continue
			}
			vid, vname := strconv.Itoa(int(m.Vertex)), ""
			if int(m.Vertex) >= 0 && int(m.Vertex) < len(v.vertices) {
				vid, vname = v.vertices[m.Vertex][0], v.vertices[m.Vertex][1]
			}
			labels := []string{v.id, v.name, vid, vname, strconv.Itoa(int(m.Subtask)), strconv.Itoa(int(m.Attempt)), tm.id}
			for _, tmm := range metricnames.Task {
				if d := tmTaskDescs[tmm.Name]; d != nil {
					ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, tmm.Value(m.Io), labels...)
				}
			}
			metricnames.OperatorMetrics(ch, opDescs, m.Io.UserMetrics, tmTaskLabels, labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(tmHeapUsed, prometheus.GaugeValue, float64(st.HeapUsed), tm.id)
	ch <- prometheus.MustNewConstMetric(tmHeapCom, prometheus.GaugeValue, float64(st.HeapCommitted), tm.id)
	ch <- prometheus.MustNewConstMetric(tmGCCount, prometheus.GaugeValue, float64(st.GcCount), tm.id)
	ch <- prometheus.MustNewConstMetric(tmThreads, prometheus.GaugeValue, float64(st.Goroutines), tm.id)
	ch <- prometheus.MustNewConstMetric(tmCPUTime, prometheus.GaugeValue, float64(st.CpuTimeNs), tm.id)
	ch <- prometheus.MustNewConstMetric(tmSlots, prometheus.GaugeValue, float64(free), tm.id, "free")
	ch <- prometheus.MustNewConstMetric(tmSlots, prometheus.GaugeValue, float64(total), tm.id, "total")
}

// named records the job's name and vertices a deployment gives.
func (j *job) named(req *flinkpb.SubmitTasksRequest) {
	if len(req.VertexIds) != len(req.VertexNames) || len(req.VertexIds) > maxReportedSubtasks {
		return
	}
	vs := make([][2]string, len(req.VertexIds))
	for i := range vs {
		vs[i] = [2]string{req.VertexIds[i], req.VertexNames[i]}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.name, j.vertices = req.JobName, vs
}
