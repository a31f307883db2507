package jobmanager

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loom-project/loom/flinkrt/metricnames"
	"github.com/loom-project/loom/proto/flinkpb"
)

// The JobManager's Prometheus metrics, with the names and labels of
// Flink's Prometheus reporter where Flink has them: each subtask's
// counts as its worker last reported them, each TaskManager's runtime
// figures, and the JobManager process's own. Everything is read at
// scrape time from what the JobManager keeps (jobs within its archive's
// bounds), so no series outlives its job.
var (
	taskLabels = []string{"job_id", "job_name", "task_id", "task_name", "subtask_index", "task_attempt_num", "tm_id"}

	descTask = map[string]*prometheus.Desc{}

	descJobs       = prometheus.NewDesc("flink_jobmanager_numRunningJobs", "Jobs this JobManager runs now.", nil, nil)
	descTMHeapUsed = prometheus.NewDesc("flink_taskmanager_Status_JVM_Memory_Heap_Used", "Heap in use of a TaskManager's processes (its own and its job workers').", []string{"tm_id"}, nil)
	descTMHeapCom  = prometheus.NewDesc("flink_taskmanager_Status_JVM_Memory_Heap_Committed", "Heap a TaskManager's processes obtained from the OS.", []string{"tm_id"}, nil)
	descTMGCCount  = prometheus.NewDesc("flink_taskmanager_Status_JVM_GarbageCollector_Go_Count", "Garbage collections of a TaskManager's processes.", []string{"tm_id"}, nil)
	descTMCPUTime  = prometheus.NewDesc("flink_taskmanager_Status_JVM_CPU_Time", "CPU time, in nanoseconds, a TaskManager's processes used.", []string{"tm_id"}, nil)
	descTMCPULoad  = prometheus.NewDesc("flink_taskmanager_Status_JVM_CPU_Load", "The share of the host's CPUs a TaskManager's processes used of late, 0 to 1.", []string{"tm_id"}, nil)
	descTMSlots    = prometheus.NewDesc("flink_taskmanager_Status_Slots", "A TaskManager's slots, free and total.", []string{"tm_id", "kind"}, nil)
)

func init() {
	for _, m := range taskMetrics {
		descTask[m.name] = prometheus.NewDesc("flink_taskmanager_job_task_"+m.name, "Flink's "+m.name+" of a subtask, as its worker last reported.", taskLabels, nil)
	}
}

func (jm *JobManager) prometheusHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(jmCollector{jm}, operatorCollector{jm}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

type jmCollector struct{ jm *JobManager }

func (jmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descTask {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{descJobs, descTMHeapUsed, descTMHeapCom, descTMGCCount, descTMCPUTime, descTMCPULoad, descTMSlots} {
		ch <- d
	}
}

func (c jmCollector) Collect(ch chan<- prometheus.Metric) {
	running := 0
	for _, j := range c.jm.Jobs() {
		d := j.Details(false)
		if d.State == JobRunning {
			running++
		}
		for _, v := range d.Vertices {
			for _, t := range v.Subtasks {
				if t.Metrics == nil {
					continue
				}
				labels := []string{d.JobId, d.Name, v.Id, v.Name, strconv.Itoa(int(t.Index)), strconv.Itoa(int(t.Attempt)), t.TaskManagerId}
				for _, m := range taskMetrics {
					ch <- prometheus.MustNewConstMetric(descTask[m.name], prometheus.GaugeValue, m.value(t.Metrics), labels...)
				}
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(running))
	for _, tm := range c.jm.rm.TaskManagers() {
		st := tm.Stats
		if st == nil {
			st = &flinkpb.ProcessStats{}
		}
		ch <- prometheus.MustNewConstMetric(descTMHeapUsed, prometheus.GaugeValue, float64(st.HeapUsed), tm.ID)
		ch <- prometheus.MustNewConstMetric(descTMHeapCom, prometheus.GaugeValue, float64(st.HeapCommitted), tm.ID)
		ch <- prometheus.MustNewConstMetric(descTMGCCount, prometheus.GaugeValue, float64(st.GcCount), tm.ID)
		ch <- prometheus.MustNewConstMetric(descTMCPUTime, prometheus.GaugeValue, float64(st.CpuTimeNs), tm.ID)
		ch <- prometheus.MustNewConstMetric(descTMCPULoad, prometheus.GaugeValue, st.CpuLoad, tm.ID)
		ch <- prometheus.MustNewConstMetric(descTMSlots, prometheus.GaugeValue, float64(tm.FreeSlots), tm.ID, "free")
		ch <- prometheus.MustNewConstMetric(descTMSlots, prometheus.GaugeValue, float64(tm.Slots), tm.ID, "total")
	}
}

// operatorCollector exports the metrics jobs' functions registered, as
// Flink's Prometheus reporter names an operator's:
// flink_taskmanager_job_task_operator_<group…>_<name>, labelled with the
// task's labels and the operator's name. Their names are the users', so
// it describes none (an unchecked collector).
type operatorCollector struct{ jm *JobManager }

func (operatorCollector) Describe(chan<- *prometheus.Desc) {}

func (c operatorCollector) Collect(ch chan<- prometheus.Metric) {
	descs := map[string]*prometheus.Desc{}
	for _, j := range c.jm.Jobs() {
		d := j.Details(false)
		for _, v := range d.Vertices {
			for _, t := range v.Subtasks {
				if t.Metrics == nil {
					continue
				}
				metricnames.OperatorMetrics(ch, descs, t.Metrics.UserMetrics, taskLabels,
					d.JobId, d.Name, v.Id, v.Name, strconv.Itoa(int(t.Index)), strconv.Itoa(int(t.Attempt)), t.TaskManagerId)
			}
		}
	}
}
