// Command dashboard-check drives Flink's own web dashboard, served by a
// loom JobManager (`loom jobmanager --web-dir DIR`), page by page in
// headless Chromium, and reports every request the pages make that fails
// (a status of 400 or more) and every error the browser logs. It exits 1
// when a page has one.
//
//	go run ./scripts/dashboard-check -url 'http://127.0.0.1:8081/?token=T'
//
// scripts/dashboard-check.sh builds the dashboard from Flink's sources,
// starts a JobManager with it, a TaskManager and a checkpointed
// event-time job, and runs this against them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// asFlink are the failed requests Flink's own JobManager makes in the
// same configuration, with why: they are reported, not counted.
var asFlink = []struct {
	path   *regexp.Regexp
	status int64
	why    string
}{
	{regexp.MustCompile(`^/jars`), 404, "Flink without web.submit.enable registers no /jars"},
	{regexp.MustCompile(`/profiler$`), 404, "Flink without rest.profiling.enabled registers no profiler"},
	{regexp.MustCompile(`^/jobs/[0-9a-f]+/rescales/`), 404, "Flink answers 404 for a job its adaptive scheduler does not run"},
}

func main() {
	link := flag.String("url", "http://127.0.0.1:8081/", "the dashboard's address, with ?token= when the JobManager asks one")
	settle := flag.Duration("settle", 3*time.Second, "how long each page is given to load and poll")
	flag.Parse()
	u, err := url.Parse(*link)
	if err != nil {
		fail(err)
	}
	token := u.Query().Get("token")
	base := u.Scheme + "://" + u.Host
	pages, err := routes(base, token)
	if err != nil {
		fail(err)
	}
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		fail(fmt.Errorf("no chromium on PATH (apt-get install chromium)"))
	}
	dir, err := os.MkdirTemp("", "dashboard-check-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(dir))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()

	var (
		mu       sync.Mutex
		problems []string
		notes    []string
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			if e.Response.Status >= 400 {
				path := strings.TrimPrefix(e.Response.URL, base)
				for _, f := range asFlink {
					if f.status == e.Response.Status && f.path.MatchString(strings.SplitN(path, "?", 2)[0]) {
						notes = append(notes, fmt.Sprintf("%d %s (as Flink: %s)", e.Response.Status, path, f.why))
						return
					}
				}
				problems = append(problems, fmt.Sprintf("%d %s", e.Response.Status, path))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
				}
				problems = append(problems, "console error: "+strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError && !strings.Contains(e.Entry.Text, "status of 4") && !strings.Contains(e.Entry.Text, "status of 5") {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		}
	}); err != nil {
		fail(err)
	}
	start := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	})
	// The link sets the token's cookie.
	if err := chromedp.Do(ctx, start, chromedp.Navigate(*link)); err != nil {
		fail(err)
	}
	bad := 0
	for _, p := range pages {
		mu.Lock()
		problems, notes = nil, nil
		mu.Unlock()
		// Each page loads the app afresh, as a link to it would.
		err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/#"+p), chromedp.Sleep(*settle))
		mu.Lock()
		got, seen := dedupe(problems), dedupe(notes)
		mu.Unlock()
		if err != nil {
			got = append(got, "navigating: "+err.Error())
		}
		if len(got) == 0 {
			fmt.Printf("ok    %s\n", p)
			for _, n := range seen {
				fmt.Printf("        %s\n", n)
			}
			continue
		}
		bad++
		fmt.Printf("FAIL  %s\n", p)
		for _, g := range got {
			fmt.Printf("        %s\n", g)
		}
	}
	fmt.Printf("%d of %d pages had a failed request or a browser error\n", bad, len(pages))
	if bad > 0 {
		os.Exit(1)
	}
}

func exceptionText(e *runtime.EventExceptionThrown) string {
	if e.ExceptionDetails.Exception != nil {
		return e.ExceptionDetails.Exception.Description
	}
	return ""
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// routes lists the dashboard's pages for what the JobManager has: its
// overview pages, each TaskManager's, and each job's with its first
// vertex's and checkpoint's.
func routes(base, token string) ([]string, error) {
	get := func(path string, v any) error {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	pages := []string{"/overview", "/job/running", "/job/completed", "/submit",
		"/job-manager/metrics", "/job-manager/config", "/job-manager/logs", "/job-manager/stdout", "/job-manager/log", "/job-manager/thread-dump", "/job-manager/profiler",
		"/task-manager"}
	var tms struct {
		TaskManagers []struct {
			ID string `json:"id"`
		} `json:"taskmanagers"`
	}
	if err := get("/taskmanagers", &tms); err != nil {
		return nil, err
	}
	for _, tm := range tms.TaskManagers {
		for _, p := range []string{"metrics", "logs", "stdout", "log-list", "thread-dump", "profiler"} {
			pages = append(pages, "/task-manager/"+tm.ID+"/"+p)
		}
	}
	var jobs struct {
		Jobs []struct {
			ID    string `json:"jid"`
			State string `json:"state"`
		} `json:"jobs"`
	}
	if err := get("/jobs/overview", &jobs); err != nil {
		return nil, err
	}
	for _, j := range jobs.Jobs {
		kind := "completed"
		if j.State != "FINISHED" && j.State != "FAILED" && j.State != "CANCELED" {
			kind = "running"
		}
		root := "/job/" + kind + "/" + j.ID
		for _, p := range []string{"overview", "timeline", "exceptions", "dataskew", "checkpoints", "configuration", "rescales", "cluster_configuration"} {
			pages = append(pages, root+"/"+p)
		}
		var d struct {
			Vertices []struct {
				ID string `json:"id"`
			} `json:"vertices"`
		}
		if err := get("/jobs/"+j.ID, &d); err != nil {
			return nil, err
		}
		for _, v := range d.Vertices {
			for _, p := range []string{"detail", "subtasks", "taskmanagers", "watermarks", "accumulators", "metrics", "backpressure", "flamegraph"} {
				pages = append(pages, root+"/overview/"+v.ID+"/"+p)
			}
		}
	}
	return pages, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dashboard-check:", err)
	os.Exit(2)
}
