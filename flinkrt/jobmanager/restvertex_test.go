package jobmanager

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// Flink's MetricsStatistics uses commons-math's default percentile: the
// position p(n+1)/100, interpolated between its neighbours.
func TestStatisticsAreFlinks(t *testing.T) {
	got := statistics([]int64{40, 10, 30, 20})
	want := map[string]int64{"min": 10, "max": 40, "sum": 100, "avg": 25, "median": 25, "p25": 12, "p75": 37, "p95": 40}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %d", k, got[k], v)
		}
	}
	if one := statistics([]int64{7}); one["p25"] != int64(7) || one["p95"] != int64(7) || one["avg"] != int64(7) {
		t.Errorf("one value: %v", one)
	}
	if none := statistics(nil); none["max"] != int64(0) || none["median"] != int64(0) {
		t.Errorf("no value: %v", none)
	}
}

func TestStatusDurationFollowsTheStates(t *testing.T) {
	running := &flinkpb.SubtaskDetails{State: TaskRunning, Timestamps: map[string]int64{
		TaskCreated: 1000, TaskScheduled: 1500, TaskDeploying: 1500, TaskInitializing: 1700, TaskRunning: 2000,
	}}
	got := statusDuration(running, 5000)
	want := map[string]int64{TaskCreated: 500, TaskScheduled: 0, TaskDeploying: 200, TaskInitializing: 300, TaskRunning: 3000}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("running: %s = %d, want %d", k, got[k], v)
		}
	}
	// A finished attempt's RUNNING ends when it finished; a state it never
	// entered is -1.
	done := &flinkpb.SubtaskDetails{State: TaskFinished, Timestamps: map[string]int64{
		TaskCreated: 1000, TaskDeploying: 1200, TaskRunning: 2000, TaskFinished: 4500,
	}}
	got = statusDuration(done, 9000)
	if got[TaskRunning] != 2500 || got[TaskScheduled] != -1 || got[TaskInitializing] != -1 || got[TaskCreated] != 200 || got[TaskDeploying] != 800 {
		t.Errorf("finished: %v", got)
	}
	done.Metrics = &flinkpb.IOMetrics{IdleMs: 1000, BackPressuredMs: 500}
	if b := accumulatedBusy(done, 9000); b != 1000 {
		t.Errorf("busy: %d, want 2500 running - 1000 idle - 500 back pressured", b)
	}
}

func TestThreadInfosSplitAProcessDump(t *testing.T) {
	d := &flinkpb.ProcessDump{Name: "worker of job j", Pid: 42, Goroutines: "goroutine 1 [running]:\nmain.main()\n\t/src/main.go:10 +0x1\n\ngoroutine 7 [chan receive]:\nloom/flinkrt/task.(*Mailbox).Run()\n\t/src/task.go:5 +0x2\n"}
	infos := threadInfos(d)
	if len(infos) != 2 {
		t.Fatalf("%d entries, want 2: %v", len(infos), infos)
	}
	name, stack := infos[1]["threadName"].(string), infos[1]["stringifiedThreadInfo"].(string)
	if name != "worker of job j (pid 42) goroutine 7 [chan receive]" || !strings.Contains(stack, "task.(*Mailbox).Run()") || !strings.HasSuffix(stack, "\n\n") {
		t.Errorf("second goroutine: %q %q", name, stack)
	}
	d.Truncated = true
	if infos := threadInfos(d); !strings.Contains(infos[len(infos)-1]["stringifiedThreadInfo"].(string), "cut at its size limit") {
		t.Error("a cut dump does not say so")
	}
}

// The sample Grafana dashboard asks for Flink series the JobManager
// exports.
func TestGrafanaDashboardNamesExportedSeries(t *testing.T) {
	board, err := os.ReadFile("../../docs/grafana-loom.json")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"flink_taskmanager_Status_JVM_Memory_Heap_Used": true}
	for _, m := range taskMetrics {
		names["flink_taskmanager_job_task_"+m.name] = true
	}
	for _, n := range regexp.MustCompile(`flink_[A-Za-z_]+`).FindAllString(string(board), -1) {
		if !names[n] {
			t.Errorf("docs/grafana-loom.json asks for %s, which the JobManager does not export", n)
		}
	}
}

// A subtask's checkpoint metrics come from its acknowledgements and stay
// across its workers' reports, which do not carry them.
func TestCheckpointTaskMetricsOutliveReports(t *testing.T) {
	var s subtask
	s.checkpointed(3*time.Millisecond, 7*time.Millisecond)
	s.report(&flinkpb.IOMetrics{RecordsIn: 10}, time.Unix(100, 0), false)
	s.report(&flinkpb.IOMetrics{RecordsIn: 30}, time.Unix(102, 0), false)
	if s.io.CheckpointAlignmentNs != 3e6 || s.io.CheckpointStartDelayNs != 7e6 || s.io.RecordsInPerSecond != 10 {
		t.Fatalf("after two reports: %+v", s.io)
	}
	var align, delay float64
	for _, m := range subtaskMetrics(s.io) {
		switch m.name {
		case "checkpointAlignmentTime":
			align = m.value
		case "checkpointStartDelayNanos":
			delay = m.value
		}
	}
	if align != 3e6 || delay != 7e6 {
		t.Errorf("metrics checkpointAlignmentTime %v, checkpointStartDelayNanos %v; want 3e6 and 7e6", align, delay)
	}
}
