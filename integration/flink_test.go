package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// standalone is a `loom jobmanager` process and `loom taskmanager`
// processes.
type standalone struct {
	t        *testing.T
	dir      string
	jmAddr   string
	restAddr string
	procs    []*exec.Cmd
	tms      []*exec.Cmd
}

func startStandalone(t *testing.T, taskManagers, slots int) *standalone {
	t.Helper()
	s := &standalone{t: t, dir: t.TempDir()}
	for i := 0; i < 100 && s.jmAddr == ""; i++ {
		p := fixedPort(1)
		if portFree(p) && portFree(p+1) {
			s.jmAddr, s.restAddr = fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", p+1)
		}
	}
	s.start("jm", loomBin, "jobmanager", "--addr", s.jmAddr, "--rest-addr", s.restAddr, "--dir", filepath.Join(s.dir, "jm"), "--log-dir", filepath.Join(s.dir, "jm-logs"))
	for i := 0; i < taskManagers; i++ {
		s.startTM(slots)
	}
	t.Cleanup(s.stop)
	s.waitTaskManagers(taskManagers)
	return s
}

// env is the environment of the deployment's processes and clients:
// its own secret file, not the user's default one.
func (s *standalone) env() []string {
	return []string{"LOOM_JOBMANAGER=" + s.jmAddr, "LOOM_FLINK_SECRET_FILE=" + filepath.Join(s.dir, "secret")}
}

func (s *standalone) start(name string, args ...string) *exec.Cmd {
	s.t.Helper()
	log, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), s.env()...)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.procs = append(s.procs, cmd)
	return cmd
}

func (s *standalone) startTM(slots int) *exec.Cmd {
	name := fmt.Sprintf("tm-%d", len(s.tms))
	tm := s.start(name, loomBin, "taskmanager", "--jobmanager", s.jmAddr, "--slots", strconv.Itoa(slots),
		"--addr", "127.0.0.1:0", "--dir", filepath.Join(s.dir, name), "--log-dir", filepath.Join(s.dir, name+"-logs"),
		"--metrics-addr", "127.0.0.1:0")
	s.tms = append(s.tms, tm)
	return tm
}

var tmMetricsRe = regexp.MustCompile(`Prometheus metrics: url=(\S+)`)

// tmMetricsURL is where TaskManager i serves Prometheus's /metrics, as
// its log says.
func (s *standalone) tmMetricsURL(i int) string {
	s.t.Helper()
	var url string
	waitFor(s.t, 20*time.Second, "the TaskManager's metrics address in its log", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("tm-%d-logs", i), "taskmanager.log"))
		m := tmMetricsRe.FindSubmatch(b)
		if m != nil {
			url = string(m[1])
		}
		return m != nil, string(b)
	})
	return url
}

// stop ends every process and checks that no job worker outlives them.
func (s *standalone) stop() {
	for _, p := range s.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if pids := s.workers(); len(pids) > 0 {
		s.t.Errorf("job workers left after the cluster stopped: %v", pids)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if s.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(s.dir, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			s.t.Logf("%s:\n%s", filepath.Base(l), tail(string(b), 3000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// workers returns the pids of job workers started by this cluster's
// TaskManagers (their artifacts live under its directory).
func (s *standalone) workers() []int { return pgrep(s.dir + "/tm-[0-9]+/blobs/") }

func (s *standalone) loom(args ...string) (string, string, int) {
	return runLoomEnv(s.env(), args...)
}

func (s *standalone) mustLoom(args ...string) string {
	s.t.Helper()
	out, errs, code := s.loom(args...)
	if code != 0 {
		s.t.Fatalf("loom %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (s *standalone) rest(path string, v any) {
	s.t.Helper()
	resp, err := http.Get("http://" + s.restAddr + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		s.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
}

func (s *standalone) waitTaskManagers(n int) {
	s.t.Helper()
	waitFor(s.t, 30*time.Second, fmt.Sprintf("%d TaskManagers to register", n), func() (bool, string) {
		resp, err := http.Get("http://" + s.restAddr + "/overview")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var o struct {
			TaskManagers int `json:"taskmanagers"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&o)
		return o.TaskManagers == n, fmt.Sprintf("%d registered", o.TaskManagers)
	})
}

type jobJSON struct {
	ID       string `json:"jid"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Failure  string `json:"root-exception"`
	Diag     string `json:"diagnostic"`
	Restarts int    `json:"restarts"`
	Tasks    struct {
		Running int `json:"running"`
		Total   int `json:"total"`
	} `json:"tasks"`
	Checkpoints struct {
		Counts struct {
			Completed int `json:"completed"`
		} `json:"counts"`
		Latest struct {
			Completed struct {
				ID   int    `json:"id"`
				Path string `json:"external_path"`
			} `json:"completed"`
		} `json:"latest"`
	} `json:"checkpoints"`
}

func (s *standalone) job(id string) jobJSON {
	s.t.Helper()
	var jobs []jobJSON
	if err := json.Unmarshal([]byte(s.mustLoom("job", "list", "-o", "json")), &jobs); err != nil {
		s.t.Fatal(err)
	}
	for _, j := range jobs {
		if j.ID == id {
			return j
		}
	}
	s.t.Fatalf("job %s not listed", id)
	return jobJSON{}
}

func (s *standalone) waitJob(id string, cond func(jobJSON) bool, what string) jobJSON {
	s.t.Helper()
	var j jobJSON
	waitFor(s.t, 60*time.Second, what, func() (bool, string) {
		j = s.job(id)
		return cond(j), fmt.Sprintf("%+v", j)
	})
	return j
}

// writeWords writes a generated text to path and returns its words'
// counts.
func writeWords(t *testing.T, path string) map[string]int {
	t.Helper()
	want := map[string]int{}
	var text strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		w := fmt.Sprintf("Word%d", r.IntN(500))
		want[strings.ToLower(w)]++
		text.WriteString(w)
		if i%12 == 11 {
			text.WriteString(".\n")
		} else {
			text.WriteString(" ")
		}
	}
	if err := os.WriteFile(path, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return want
}

// checkCounts checks wordcount's output, parts part files of running
// counts, against want.
func checkCounts(t *testing.T, output string, parts int, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	if files := eachCount(t, output, func(word string, n int) { got[word] = max(got[word], n) }); files != parts {
		t.Fatalf("want %d part files, got %d", parts, files)
	}
	if len(got) != len(want) {
		t.Errorf("got %d words, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("%s: counted %d, want %d", w, got[w], n)
		}
	}
}

// eachCount calls fn with every (word,count) line of wordcount's part
// files in output and returns how many part files there are.
func eachCount(t *testing.T, output string, fn func(word string, n int)) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(output, "part-*"))
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSuffix(strings.TrimPrefix(sc.Text(), "("), ")")
			word, n, ok := strings.Cut(line, ",")
			c, err := strconv.Atoi(n)
			if !ok || err != nil {
				t.Fatalf("%s: bad line %q", p, sc.Text())
			}
			fn(word, c)
		}
		f.Close()
	}
	return len(files)
}

// The README's wordcount, on a generated text, across two TaskManager
// processes: every word counted as a plain count does, and no worker left.
func TestWordCountAcrossTwoTaskManagers(t *testing.T) {
	s := startStandalone(t, 2, 2)
	input := filepath.Join(s.dir, "words.txt")
	want := writeWords(t, input)
	output := filepath.Join(s.dir, "out")
	out := s.mustLoom("run", "-t", "remote", "-p", "4", wordcountBin, "--input", input, "--output", output)
	if !strings.Contains(out, "FINISHED") {
		t.Fatalf("run output lacks FINISHED:\n%s", out)
	}
	checkCounts(t, output, 4, want)

	// The job's subtasks ran on both TaskManagers.
	var jobs struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	s.rest("/jobs", &jobs)
	if len(jobs.Jobs) != 1 {
		t.Fatalf("want one job, got %+v", jobs)
	}
	var detail struct {
		State    string `json:"state"`
		Vertices []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Metrics struct {
				ReadRecords   int64 `json:"read-records"`
				WriteRecords  int64 `json:"write-records"`
				ReadBytes     int64 `json:"read-bytes"`
				WriteBytes    int64 `json:"write-bytes"`
				ReadComplete  bool  `json:"read-records-complete"`
				WriteComplete bool  `json:"write-records-complete"`
			} `json:"metrics"`
		} `json:"vertices"`
		Plan struct {
			Nodes []struct {
				ID string `json:"id"`
			} `json:"nodes"`
		} `json:"plan"`
	}
	s.rest("/jobs/"+jobs.Jobs[0].ID, &detail)
	if detail.State != "FINISHED" || len(detail.Vertices) != 2 || len(detail.Plan.Nodes) != len(detail.Vertices) {
		t.Fatalf("REST job details: %+v", detail)
	}
	// The source and tokenizer write every word once, across the hash
	// exchange; the running counts read every word and, writing to their
	// sink in the same chain, send nothing on.
	words := int64(0)
	for _, n := range want {
		words += int64(n)
	}
	src, counts := detail.Vertices[0].Metrics, detail.Vertices[1].Metrics
	if src.ReadRecords != 0 || src.WriteRecords != words || counts.ReadRecords != words || counts.WriteRecords != 0 {
		t.Errorf("vertex records: %s read %d wrote %d, %s read %d wrote %d; want 0, %d, %d, 0",
			detail.Vertices[0].Name, src.ReadRecords, src.WriteRecords, detail.Vertices[1].Name, counts.ReadRecords, counts.WriteRecords, words, words)
	}
	if !src.ReadComplete || !src.WriteComplete || !counts.ReadComplete {
		t.Errorf("the finished job's counts are not complete: %+v %+v", src, counts)
	}
	// Half the words cross between the two TaskManagers' workers.
	if src.WriteBytes == 0 || src.WriteBytes != counts.ReadBytes {
		t.Errorf("bytes across the network: written %d, read %d; want the same, above 0", src.WriteBytes, counts.ReadBytes)
	}
	// Flink's metric queries, as the dashboard makes them: aggregated over
	// the subtasks, and one subtask's.
	var agg []struct {
		ID  string  `json:"id"`
		Sum float64 `json:"sum"`
		Max float64 `json:"max"`
	}
	s.rest("/jobs/"+jobs.Jobs[0].ID+"/vertices/"+detail.Vertices[1].ID+"/subtasks/metrics?get=numRecordsIn,backPressuredTimeMsPerSecond", &agg)
	if len(agg) != 2 || agg[0].ID != "numRecordsIn" || int64(agg[0].Sum) != words || agg[1].ID != "backPressuredTimeMsPerSecond" {
		t.Errorf("aggregated numRecordsIn and backPressuredTimeMsPerSecond: %+v, want a sum of %d records", agg, words)
	}
	// The tokenizer's own metric, in its operator's scope: every line.
	raw, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	lines := float64(len(strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")))
	s.rest("/jobs/"+jobs.Jobs[0].ID+"/vertices/"+detail.Vertices[0].ID+"/subtasks/metrics?get=tokenizer.lines", &agg)
	if len(agg) != 1 || agg[0].ID != "tokenizer.lines" || agg[0].Sum != lines {
		t.Errorf("aggregated tokenizer.lines: %+v, want a sum of %v lines", agg, lines)
	}
	var one []struct {
		ID    string `json:"id"`
		Value string `json:"value"`
	}
	s.rest("/jobs/"+jobs.Jobs[0].ID+"/vertices/"+detail.Vertices[1].ID+"/metrics?get=0.numRecordsIn", &one)
	if len(one) != 1 || one[0].ID != "0.numRecordsIn" || one[0].Value == "" || one[0].Value == "0" {
		t.Errorf("subtask 0's numRecordsIn: %+v", one)
	}
	tms := map[string]bool{}
	for i, v := range detail.Vertices {
		var vd struct {
			Subtasks []struct {
				TM        string           `json:"taskmanager-id"`
				Durations map[string]int64 `json:"status-duration"`
			} `json:"subtasks"`
			Aggregated struct {
				Metrics map[string]map[string]int64 `json:"metrics"`
			} `json:"aggregated"`
		}
		s.rest("/jobs/"+jobs.Jobs[0].ID+"/vertices/"+v.ID, &vd)
		for _, st := range vd.Subtasks {
			tms[st.TM] = true
			if st.Durations["RUNNING"] < 0 || st.Durations["DEPLOYING"] < 0 {
				t.Errorf("%s: a finished subtask's state durations %v", v.Name, st.Durations)
			}
		}
		if i == 1 && vd.Aggregated.Metrics["read-records"]["sum"] != words {
			t.Errorf("%s: aggregated read-records %v, want a sum of %d", v.Name, vd.Aggregated.Metrics["read-records"], words)
		}
		// The same subtasks, by TaskManager.
		var byTM struct {
			TaskManagers []struct {
				ID      string         `json:"taskmanager-id"`
				Status  string         `json:"status"`
				Counts  map[string]int `json:"status-counts"`
				Metrics struct {
					ReadRecords int64 `json:"read-records"`
				} `json:"metrics"`
			} `json:"taskmanagers"`
		}
		s.rest("/jobs/"+jobs.Jobs[0].ID+"/vertices/"+v.ID+"/taskmanagers", &byTM)
		n, read := 0, int64(0)
		for _, tm := range byTM.TaskManagers {
			n += tm.Counts["FINISHED"]
			read += tm.Metrics.ReadRecords
			if tm.Status != "FINISHED" {
				t.Errorf("%s on %s: %s, want FINISHED", v.Name, tm.ID, tm.Status)
			}
		}
		if n != len(vd.Subtasks) || (i == 1 && read != words) {
			t.Errorf("%s by TaskManager: %d finished subtasks of %d, %d records read: %+v", v.Name, n, len(vd.Subtasks), read, byTM)
		}
	}
	if len(tms) != 2 {
		t.Errorf("the job ran on TaskManagers %v, want both", tms)
	}
	// Prometheus sees the same counts, by Flink's reporter's names.
	prom := scrape(t, http.DefaultClient, "http://"+s.restAddr+"/metrics")
	in := 0.0
	for _, l := range prom["flink_taskmanager_job_task_numRecordsIn"] {
		if l["task_id"] == detail.Vertices[1].ID {
			v, err := strconv.ParseFloat(l["value"], 64)
			if err != nil {
				t.Fatal(err)
			}
			in += v
		}
	}
	promLines := 0.0
	for _, l := range prom["flink_taskmanager_job_task_operator_lines"] {
		if v, err := strconv.ParseFloat(l["value"], 64); err == nil && l["operator_name"] == "tokenizer" {
			promLines += v
		}
	}
	if promLines != lines {
		t.Errorf("Prometheus: the tokenizer's lines %v, want %v", promLines, lines)
	}
	if int64(in) != words || len(prom["flink_taskmanager_Status_JVM_Memory_Heap_Used"]) != 2 {
		t.Errorf("Prometheus: numRecordsIn of the counts %v, want %d; %d TaskManagers' heaps", in, words, len(prom["flink_taskmanager_Status_JVM_Memory_Heap_Used"]))
	}
	// Flink's TaskManager page reads its processes' memory and
	// collections.
	for id := range tms {
		var tm struct {
			Metrics *struct {
				HeapUsed      int64 `json:"heapUsed"`
				HeapCommitted int64 `json:"heapCommitted"`
				GCs           []struct {
					Name  string `json:"name"`
					Count int64  `json:"count"`
				} `json:"garbageCollectors"`
			} `json:"metrics"`
		}
		waitFor(t, 10*time.Second, "TaskManager "+id+"'s runtime figures", func() (bool, string) {
			s.rest("/taskmanagers/"+id, &tm)
			return tm.Metrics != nil && tm.Metrics.HeapUsed > 0 && tm.Metrics.HeapCommitted >= tm.Metrics.HeapUsed && len(tm.Metrics.GCs) == 1, fmt.Sprintf("%+v", tm.Metrics)
		})
	}
	waitFor(t, 20*time.Second, "the job's workers to exit", func() (bool, string) {
		pids := s.workers()
		return len(pids) == 0, fmt.Sprint(pids)
	})
	s.checkLogs(t, tms)
}

// checkLogs reads the standalone deployment's logs over REST, as the
// dashboard's log pages do (--log-dir): the JobManager's log and output,
// and each TaskManager's, which the JobManager fetches from it.
func (s *standalone) checkLogs(t *testing.T, tms map[string]bool) {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(s.dir, "jm.log"))
	m := regexp.MustCompile(`\?token=([0-9a-f]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("the JobManager printed no dashboard link:\n%s", b)
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+s.restAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+string(m[1]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for path, want := range map[string]string{
		"/jobmanager/log": "JobManager started", "/jobmanager/stdout": "REST API at", "/jobmanager/logs": `"jobmanager.out"`,
	} {
		if code, body := get(path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want %q in %.300q", path, code, want, body)
		}
	}
	for id := range tms {
		for path, want := range map[string]string{
			"/taskmanagers/" + id + "/log": "registered with", "/taskmanagers/" + id + "/logs": `"stdout"`, "/taskmanagers/" + id + "/logs/taskmanager.log": "registered with",
		} {
			if code, body := get(path); code != 200 || !strings.Contains(body, want) {
				t.Errorf("GET %s: %d, want %q in %.300q", path, code, want, body)
			}
		}
		if code, _ := get("/taskmanagers/" + id + "/stdout"); code != 200 {
			t.Errorf("a TaskManager's stdout: %d", code)
		}
		if code, body := get("/taskmanagers/" + id + "/logs/nope.log"); code != 404 {
			t.Errorf("a log the TaskManager lacks: %d %q", code, body)
		}
	}
}

func TestJobCancel(t *testing.T) {
	s := startStandalone(t, 1, 2)
	id := strings.TrimSpace(s.mustLoom("run", "-d", "-p", "2", topspeedBin, "--duration", "0"))
	s.waitJob(id, func(j jobJSON) bool { return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total }, "all tasks RUNNING")
	// The TaskManager's own Prometheus metrics: its subtasks' counts, by
	// Flink's reporter's names, and its slots.
	url := s.tmMetricsURL(0)
	waitFor(t, 20*time.Second, "the TaskManager's metrics of the running job", func() (bool, string) {
		prom := scrape(t, http.DefaultClient, url)
		out := 0.0
		for _, l := range prom["flink_taskmanager_job_task_numRecordsOut"] {
			if v, err := strconv.ParseFloat(l["value"], 64); err == nil && l["job_id"] == id && l["task_name"] != "" {
				out += v
			}
		}
		total := ""
		for _, l := range prom["flink_taskmanager_Status_Slots"] {
			if l["kind"] == "total" {
				total = l["value"]
			}
		}
		return out > 0 && total == "2" && len(prom["flink_taskmanager_Status_JVM_CPU_Time"]) == 1, fmt.Sprintf("records out %v, slots %q", out, total)
	})
	out := s.mustLoom("job", "cancel", id)
	if !strings.Contains(out, "CANCELED after") || !strings.Contains(out, "canceled with `loom job cancel`") {
		t.Fatalf("cancel said %q", out)
	}
	// The cancel is the job's end, not a failure of the tasks it stopped.
	if j := s.job(id); j.State != "CANCELED" || j.Failure != "" {
		t.Fatalf("job after cancel: %s, failure %q", j.State, j.Failure)
	}
	waitFor(t, 20*time.Second, "the job's worker to exit", func() (bool, string) {
		pids := s.workers()
		return len(pids) == 0, fmt.Sprint(pids)
	})
	// The slots are free again: another job runs.
	if out := s.mustLoom("run", "-p", "2", wordcountBin, "--output", filepath.Join(s.dir, "out")); !strings.Contains(out, "FINISHED") {
		t.Fatalf("a job after the cancel: %s", out)
	}
	// Stopped, each daemon says so in its log, as it said it started.
	s.stop()
	for _, f := range []string{"jm-logs/jobmanager.log", "tm-0-logs/taskmanager.log"} {
		b, _ := os.ReadFile(filepath.Join(s.dir, f))
		if what := strings.SplitN(filepath.Base(f), ".", 2)[0]; !strings.Contains(strings.ToLower(string(b)), what+" started") || !strings.Contains(strings.ToLower(string(b)), what+" stopped") {
			t.Errorf("%s does not say the %s started and stopped:\n%s", f, what, b)
		}
	}
}

func TestTaskManagerKilledFailsTheJob(t *testing.T) {
	s := startStandalone(t, 2, 2)
	id := strings.TrimSpace(s.mustLoom("run", "-d", "-p", "4", topspeedBin, "--duration", "0", "--num-cars", "8"))
	s.waitJob(id, func(j jobJSON) bool { return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total }, "all tasks RUNNING")
	if err := s.tms[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	j := s.waitJob(id, func(j jobJSON) bool { return j.State == "FAILED" }, "the job to fail")
	if !strings.Contains(j.Failure, "TaskManager") {
		t.Errorf("the failure does not name the TaskManager: %q", j.Failure)
	}
	waitFor(t, 20*time.Second, "the job's workers to exit", func() (bool, string) {
		pids := s.workers()
		return len(pids) == 0, fmt.Sprint(pids)
	})
}

func TestArtifactWithADifferentGraphIsRefused(t *testing.T) {
	s := startStandalone(t, 1, 1)
	out, errs, code := s.loom("run", "-p", "1", shiftyBin)
	if code == 0 {
		t.Fatalf("a job whose workers build another graph ran:\n%s", out)
	}
	if !strings.Contains(errs, "different job graph") {
		t.Fatalf("the error does not say the graphs differ:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
}

func TestRunRefusesWhatIsNotAJob(t *testing.T) {
	s := startStandalone(t, 1, 1)
	for _, c := range []struct {
		prog []string
		want string
	}{
		{[]string{"/bin/true"}, "is not a loom job"},
		{[]string{"/bin/sh", "-c", "echo boom >&2; exit 3"}, "boom"},
		{[]string{filepath.Join(s.dir, "nothing-here")}, "no such file"},
		{[]string{s.dir}, "not an executable"},
		// A configuration key loom does not read, named, with those it does.
		{[]string{"-D", "bogus.key=1", wordcountBin}, "-D bogus.key: loom reads no configuration key of that name"},
		{[]string{"-D", "bogus.key=1", wordcountBin}, "restart-strategy.fixed-delay.attempts"},
	} {
		_, errs, code := s.loom(append([]string{"run"}, c.prog...)...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("run %v: exit %d, stderr %q; want an error containing %q", c.prog, code, errs, c.want)
		}
	}
	var jobs struct {
		Jobs []any `json:"jobs"`
	}
	s.rest("/jobs", &jobs)
	if len(jobs.Jobs) != 0 {
		t.Errorf("something was submitted: %v", jobs.Jobs)
	}
}
