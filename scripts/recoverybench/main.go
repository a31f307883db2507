// Command recoverybench measures how fast a per-job application recovers
// from a TaskManager killed -9, on the cluster at LOOM_RM. Each run starts
// a job per-job with checkpoints over a paced input and the exactly-once
// file sink: wordcount at -p 2 (one slot per TaskManager; one region, so
// the whole job restarts) or, with -job grep, grep at -p 4 (two slots per
// TaskManager; four regions, so only the lost TaskManager's two restart
// unless -failover full). It waits for a completed checkpoint, kills one
// TaskManager process and times, from the kill: the job seen RESTARTING
// (a full restart only), the job RUNNING again with every task running
// (restored from the checkpoint), and the first part file committed by a
// restarted sink subtask (the first new output a reader sees from the
// restarted tasks, at their first checkpoint). It prints the median and
// range of each; docs/BENCHMARKS.md records them.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/loom-project/loom/localcluster"
)

func main() {
	loom := flag.String("loom", "bin/loom", "the loom binary")
	job := flag.String("job", "wordcount", "the job: wordcount or grep")
	failover := flag.String("failover", "", "the failover strategy, region or full (default: Flink's, region)")
	runs := flag.Int("runs", 10, "runs (the median is printed)")
	interval := flag.Duration("interval", time.Second, "checkpoint interval")
	dir := flag.String("dir", "", "working directory (default: a temporary one)")
	backoff := flag.Duration("initial-backoff", 0, "the exponential-delay restart strategy's first delay (default: Flink's, 1s)")
	checkpointDir := flag.String("checkpoint-dir", "", "where checkpoints go: a directory or s3://bucket/prefix (default: one in -dir)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "recoverybench-")
		check(err)
		defer os.RemoveAll(d)
		*dir = d
	}
	check(os.MkdirAll(*dir, 0o755))
	input := filepath.Join(*dir, "words.txt")
	var spec jobSpec
	switch *job {
	case "wordcount":
		check(writeWords(input, 200000))
		spec = jobSpec{name: "wordcount -p 2", args: []string{"-p", "2", "--slots-per-tm", "1"},
			prog: []string{"bin/examples/wordcount", "--input", input, "--line-delay", "2ms"}}
	case "grep":
		check(writeLines(input, 20000))
		spec = jobSpec{name: "grep -p 4 (4 regions on 2 TaskManagers)", args: []string{"-p", "4", "--slots-per-tm", "2"},
			prog: []string{"bin/examples/grep", "--input", input, "--line-delay", "1ms", "."}}
	default:
		check(fmt.Errorf("-job %q: want wordcount or grep", *job))
	}
	if *failover != "" {
		spec.args = append(spec.args, "-D", "jobmanager.execution.failover-strategy="+*failover)
	}
	var restarting, running, output []time.Duration
	restarted := map[string]int{} // "2 of 4" -> runs
	for i := 0; i < *runs; i++ {
		r, err := measure(*loom, spec, filepath.Join(*dir, fmt.Sprint(i)), *checkpointDir, *interval, *backoff)
		check(err)
		if r.restarting > 0 {
			restarting = append(restarting, r.restarting)
		}
		running, output = append(running, r.running), append(output, r.output)
		restarted[fmt.Sprintf("%d of %d", r.restarted, r.total)]++
		fmt.Fprintf(os.Stderr, "run %d (%s): RESTARTING %v, RUNNING %v, new output %v, %d of %d tasks restarted\n",
			i+1, r.app, ms(r.restarting), ms(r.running), ms(r.output), r.restarted, r.total)
	}
	strategy := "default restart strategy (exponential-delay from 1s)"
	if *backoff > 0 {
		strategy = fmt.Sprintf("exponential-delay from %v", *backoff)
	}
	if *failover != "" {
		strategy += ", failover strategy " + *failover
	}
	where := "in a local directory"
	if *checkpointDir != "" {
		where = "in " + *checkpointDir
	}
	fmt.Printf("%s, TaskManager kill -9, %d runs, checkpoints every %v %s, %s:\n", spec.name, *runs, *interval, where, strategy)
	if len(restarting) > 0 {
		report("job seen RESTARTING", restarting)
	} else {
		fmt.Printf("  %-32s never (only regions restarted)\n", "job seen RESTARTING")
	}
	report("job RUNNING again, all tasks", running)
	report("first new committed output", output)
	var tally []string
	for k, n := range restarted {
		tally = append(tally, fmt.Sprintf("%s in %d runs", k, n))
	}
	sort.Strings(tally)
	fmt.Printf("  %-32s %s\n", "tasks restarted", strings.Join(tally, ", "))
}

// jobSpec is the job a run starts: `loom run` options, then the program.
type jobSpec struct {
	name       string
	args, prog []string
}

type result struct {
	restarting, running, output time.Duration
	restarted, total            int // tasks in a later attempt, and all
	app                         string
}

// measure runs one job, kills one of its TaskManagers and times the
// recovery; it cancels the job before it returns.
func measure(loom string, spec jobSpec, dir, checkpointDir string, interval, backoff time.Duration) (result, error) {
	var r result
	out := filepath.Join(dir, "out")
	if checkpointDir == "" {
		checkpointDir = filepath.Join(dir, "checkpoints")
	}
	args := append([]string{"run", "-t", "per-job", "-d"}, spec.args...)
	args = append(args, "--checkpoint-interval", interval.String(), "--checkpoint-dir", checkpointDir)
	if backoff > 0 {
		args = append(args, "-D", "restart-strategy.exponential-delay.initial-backoff="+backoff.String())
	}
	args = append(args, spec.prog[0], "--output", out)
	args = append(args, spec.prog[1:]...)
	cmd := exec.Command(loom, args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("loom run: %v\n%s", err, b)
	}
	app := regexp.MustCompile(`application_\d+_\d+`).FindString(string(b))
	web := regexp.MustCompile(`http://[0-9.:]+`).FindString(string(b))
	if app == "" || web == "" {
		return r, fmt.Errorf("loom run said:\n%s", b)
	}
	r.app = app
	defer func() { _ = exec.Command(loom, "app", "kill", app).Run() }()
	var jobs struct {
		Jobs []struct{ ID string } `json:"jobs"`
	}
	if err := waitUntil(30*time.Second, func() bool { return get(web+"/jobs", &jobs) == nil && len(jobs.Jobs) == 1 }); err != nil {
		return r, fmt.Errorf("the job at %s: %v", web, err)
	}
	job := jobs.Jobs[0].ID
	if err := waitUntil(30*time.Second, func() bool {
		st, running, total := jobState(web, job)
		return st == "RUNNING" && running == total && total > 0 && checkpoints(web, job).Counts.Completed > 0
	}); err != nil {
		return r, fmt.Errorf("a first checkpoint: %v", err)
	}
	tms := localcluster.AppProcesses(app, "loom taskmanager")
	if len(tms) != 2 {
		return r, fmt.Errorf("TaskManager processes of %s: %v", app, tms)
	}
	before := committed(out)
	var sinks map[int]bool // the sink's restarted subtasks
	killed := time.Now()
	if err := syscall.Kill(tms[0], syscall.SIGKILL); err != nil {
		return r, err
	}
	err = waitUntil(30*time.Second, func() bool {
		now := time.Since(killed)
		st, running, total := jobState(web, job)
		if st == "RESTARTING" && r.restarting == 0 {
			r.restarting = now
		}
		if r.running == 0 && st == "RUNNING" && running == total && total > 0 && checkpoints(web, job).Counts.Restored > 0 {
			r.running = now
			// The restored sinks have committed what the checkpoint
			// left pending: that was output before the kill.
			before = committed(out)
			sinks = restartedSinks(web, job, &r)
		}
		if r.running > 0 && r.output == 0 {
			for f := range committed(out) {
				if !before[f] && sinks[subtaskOf(f)] {
					r.output = time.Since(killed)
				}
			}
		}
		return r.running > 0 && r.output > 0
	})
	if err != nil {
		return r, fmt.Errorf("recovery of job %s: %v (so far %+v)", job, err, r)
	}
	return r, nil
}

// restartedSinks counts the job's tasks in a later attempt than their
// first into r, and returns the restarted subtasks of its last vertex,
// which ends in the sink.
func restartedSinks(web, job string, r *result) map[int]bool {
	var j struct {
		Vertices []struct{ ID string } `json:"vertices"`
	}
	sinks := map[int]bool{}
	if get(web+"/jobs/"+job, &j) != nil {
		return sinks
	}
	for i, v := range j.Vertices {
		var vd struct {
			Subtasks []struct{ Subtask, Attempt int } `json:"subtasks"`
		}
		if get(web+"/jobs/"+job+"/vertices/"+v.ID, &vd) != nil {
			continue
		}
		for _, st := range vd.Subtasks {
			r.total++
			if st.Attempt > 0 {
				r.restarted++
				if i == len(j.Vertices)-1 {
					sinks[st.Subtask] = true
				}
			}
		}
	}
	return sinks
}

// subtaskOf is the subtask that wrote part file path (part-SUBTASK-N).
func subtaskOf(path string) int {
	var s, n int
	if _, err := fmt.Sscanf(filepath.Base(path), "part-%d-%d", &s, &n); err != nil {
		return -1
	}
	return s
}

func jobState(web, job string) (state string, running, total int) {
	var ov struct {
		Jobs []struct {
			ID    string         `json:"jid"`
			State string         `json:"state"`
			Tasks map[string]int `json:"tasks"`
		} `json:"jobs"`
	}
	if get(web+"/jobs/overview", &ov) != nil {
		return "", 0, 0
	}
	for _, j := range ov.Jobs {
		if j.ID == job {
			return j.State, j.Tasks["running"], j.Tasks["total"]
		}
	}
	return "", 0, 0
}

type checkpointCounts struct {
	Counts struct {
		Completed int `json:"completed"`
		Restored  int `json:"restored"`
	} `json:"counts"`
}

func checkpoints(web, job string) checkpointCounts {
	var c checkpointCounts
	_ = get(web+"/jobs/"+job+"/checkpoints", &c)
	return c
}

var client = &http.Client{Timeout: 2 * time.Second}

func get(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// committed lists the part files a reader of dir sees.
func committed(dir string) map[string]bool {
	names, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// waitUntil polls cond every 2 ms until it holds or the timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// writeWords writes n words drawn from 500, twelve to a line.
func writeWords(path string, n int) error {
	var b strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "word%d", r.IntN(500))
		if i%12 == 11 {
			b.WriteString("\n")
		} else {
			b.WriteString(" ")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeLines writes n numbered lines.
func writeLines(path string, n int) error {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "line %06d\n", i)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func report(what string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Printf("  %-32s median %v (%v–%v)\n", what, ms(ds[len(ds)/2]), ms(ds[0]), ms(ds[len(ds)-1]))
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "recoverybench:", err)
		os.Exit(1)
	}
}
