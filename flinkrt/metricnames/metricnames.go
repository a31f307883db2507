// Package metricnames holds the names of the metrics a subtask reports,
// as Flink's REST API and Prometheus reporter give them, shared by the
// JobManager and the TaskManager that export them.
package metricnames

import (
	"math"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loom-project/loom/proto/flinkpb"
)

// TaskMetric is a task metric by Flink's name, read from a subtask's
// counts; Rate says it is a rate the JobMaster computes from two reports.
type TaskMetric struct {
	Name  string
	Value func(*flinkpb.IOMetrics) float64
	Rate  bool
}

// Task are the task metrics loom reports, as the REST API and
// Prometheus name them.
var Task = []TaskMetric{
	{"numRecordsIn", func(m *flinkpb.IOMetrics) float64 { return float64(m.RecordsIn) }, false},
	{"numRecordsOut", func(m *flinkpb.IOMetrics) float64 { return float64(m.RecordsOut) }, false},
	{"numBytesIn", func(m *flinkpb.IOMetrics) float64 { return float64(m.BytesIn) }, false},
	{"numBytesOut", func(m *flinkpb.IOMetrics) float64 { return float64(m.BytesOut) }, false},
	{"numRecordsInPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.RecordsInPerSecond }, true},
	{"numRecordsOutPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.RecordsOutPerSecond }, true},
	{"numBytesInPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.BytesInPerSecond }, true},
	{"numBytesOutPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.BytesOutPerSecond }, true},
	{"backPressuredTimeMsPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.BackPressuredMsPerSecond }, true},
	{"idleTimeMsPerSecond", func(m *flinkpb.IOMetrics) float64 { return m.IdleMsPerSecond }, true},
	{"busyTimeMsPerSecond", BusyMsPerSecond, true},
	{"accumulatedBackPressuredTimeMs", func(m *flinkpb.IOMetrics) float64 { return float64(m.BackPressuredMs) }, false},
	{"accumulatedIdleTimeMs", func(m *flinkpb.IOMetrics) float64 { return float64(m.IdleMs) }, false},
	{"numLateRecordsDropped", func(m *flinkpb.IOMetrics) float64 { return float64(m.LateRecordsDropped) }, false},
	// The latest checkpoint's, in nanoseconds.
	{"checkpointAlignmentTime", func(m *flinkpb.IOMetrics) float64 { return float64(m.CheckpointAlignmentNs) }, false},
	{"checkpointStartDelayNanos", func(m *flinkpb.IOMetrics) float64 { return float64(m.CheckpointStartDelayNs) }, false},
	// Long.MIN_VALUE before the first watermark, as Flink's gauges.
	{"currentInputWatermark", func(m *flinkpb.IOMetrics) float64 { return WatermarkValue(m.InputWatermark, m.HasInputWatermark) }, false},
	{"currentOutputWatermark", func(m *flinkpb.IOMetrics) float64 { return WatermarkValue(m.OutputWatermark, m.HasOutputWatermark) }, false},
}

// WatermarkValue is a watermark gauge's value: Long.MIN_VALUE before
// the first, as Flink's.
func WatermarkValue(wm int64, has bool) float64 {
	if !has {
		return math.MinInt64
	}
	return float64(wm)
}

// BusyMsPerSecond is the rest of each second: neither waiting for input
// nor for credit, as Flink's busyTimeMsPerSecond.
func BusyMsPerSecond(m *flinkpb.IOMetrics) float64 {
	if m.RecordsInPerSecond == 0 && m.RecordsOutPerSecond == 0 && m.IdleMsPerSecond == 0 && m.BackPressuredMsPerSecond == 0 {
		return 0 // no rate yet, or the attempt ended
	}
	return max(1000-m.IdleMsPerSecond-m.BackPressuredMsPerSecond, 0)
}

// PromName is a metric name with every character Prometheus does not
// allow in one replaced by '_', as Flink's reporter does.
func PromName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// OperatorMetrics sends the metrics a subtask's functions registered
// (user, by "<operator>.<group…>.<name>") as Flink's Prometheus reporter
// names an operator's: flink_taskmanager_job_task_operator_<group…>_<name>,
// labelled with labels (of the names labelNames, the task's) and
// operator_name. descs holds one Desc per series name for a scrape.
func OperatorMetrics(ch chan<- prometheus.Metric, descs map[string]*prometheus.Desc, user map[string]float64, labelNames []string, labels ...string) {
	for name, x := range user {
		op, metric, ok := strings.Cut(name, ".")
		if !ok {
			continue
		}
		fq := "flink_taskmanager_job_task_operator_" + PromName(metric)
		d, ok := descs[fq]
		if !ok {
			d = prometheus.NewDesc(fq, "A metric a job's function registered, as its worker last reported.", append(slices.Clone(labelNames), "operator_name"), nil)
			descs[fq] = d
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, append(slices.Clone(labels), op)...)
	}
}
