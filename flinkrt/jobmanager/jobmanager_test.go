package jobmanager_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/proto/flinkpb"
)

func testTrust(t testing.TB) *auth.Trust {
	t.Helper()
	tr, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// startJM runs a JobManager with no TaskManagers; jobs wait for slots.
func startJM(t testing.TB, local bool) (*jobmanager.JobManager, flinkpb.DispatcherClient) {
	t.Helper()
	return startJMWith(t, jobmanager.Config{Local: local})
}

func startJMWith(t testing.TB, cfg jobmanager.Config) (*jobmanager.JobManager, flinkpb.DispatcherClient) {
	t.Helper()
	cfg.Addr, cfg.Dir = "127.0.0.1:0", t.TempDir()
	if cfg.RestAddr == "" {
		cfg.RestAddr = "127.0.0.1:0"
	}
	if cfg.Trust == nil {
		cfg.Trust = testTrust(t)
	}
	jm, err := jobmanager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = jm.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(jm.Addr(), cfg.Trust.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return jm, flinkpb.NewDispatcherClient(conn)
}

func plan(t testing.TB) *flinkpb.JobGraph {
	t.Helper()
	env := stream.NewEnv().SetParallelism(2)
	nums := stream.FromSource(env, "numbers", source.Sequence(0, 10))
	doubled := stream.Map(nums.Rebalance(), "double", func(n int64) int64 { return 2 * n })
	stream.Sink(doubled, "out", sink.Discard[int64]())
	_, jg, err := env.Plan("doubler")
	if err != nil {
		t.Fatal(err)
	}
	return jg
}

func TestSubmitRefusesMalformedGraphsAndMissingArtifacts(t *testing.T) {
	_, d := startJM(t, false)
	ctx := context.Background()
	good := plan(t)

	bad := proto.Clone(good).(*flinkpb.JobGraph)
	bad.Edges[0].TargetVertex = "ffffffffffffffffffffffffffffffff"
	_, err := d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("a graph with a dangling edge: %v", err)
	}
	_, err = d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no graph: %v", err)
	}
	_, err = d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: good, Artifact: &flinkpb.BlobKey{Sha256: strings.Repeat("a", 64)}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "upload") {
		t.Fatalf("an artifact never uploaded: %v", err)
	}

	// An upload whose content does not match its announced digest is refused.
	up, err := d.UploadBlob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = up.Send(&flinkpb.BlobChunk{Key: &flinkpb.BlobKey{Sha256: strings.Repeat("b", 64), Size: 5}, Data: []byte("hello")})
	if _, err := up.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("a mismatched upload: %v", err)
	}
}

func getJSON(t *testing.T, url string, want int, v any) {
	t.Helper()
	getJSONWith(t, http.DefaultClient, url, want, v)
}

func getJSONWith(t *testing.T, c *http.Client, url string, want int, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s, want %d", url, resp.Status, want)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// The REST API answers with Flink's paths, fields and error bodies.
func TestRESTSpeaksFlinksContract(t *testing.T) {
	jm, d := startJM(t, true)
	base := "http://" + jm.RestAddr()
	jg := plan(t)
	resp, err := d.SubmitJob(context.Background(), &flinkpb.SubmitJobRequest{JobGraph: jg})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.JobId

	var config map[string]any
	getJSON(t, base+"/config", 200, &config)
	features, _ := config["features"].(map[string]any)
	for _, k := range []string{"web-history", "web-submit", "web-cancel", "web-rescale"} {
		if _, ok := features[k].(bool); !ok {
			t.Errorf("/config features lack %s: %v", k, config)
		}
	}
	var overview map[string]any
	getJSON(t, base+"/v1/overview", 200, &overview)
	if overview["jobs-running"] != float64(1) || overview["taskmanagers"] != float64(0) {
		t.Errorf("/v1/overview: %v", overview)
	}

	var jobsOverview struct {
		Jobs []struct {
			JID   string         `json:"jid"`
			State string         `json:"state"`
			End   int64          `json:"end-time"`
			Tasks map[string]int `json:"tasks"`
		} `json:"jobs"`
	}
	getJSON(t, base+"/jobs/overview", 200, &jobsOverview)
	if len(jobsOverview.Jobs) != 1 || jobsOverview.Jobs[0].JID != id || jobsOverview.Jobs[0].State != "CREATED" ||
		jobsOverview.Jobs[0].End != -1 || jobsOverview.Jobs[0].Tasks["total"] != 4 || jobsOverview.Jobs[0].Tasks["created"] != 4 {
		t.Errorf("/jobs/overview: %+v", jobsOverview)
	}

	var job struct {
		JID          string         `json:"jid"`
		StatusCounts map[string]int `json:"status-counts"`
		Vertices     []struct {
			ID          string         `json:"id"`
			Parallelism int            `json:"parallelism"`
			Tasks       map[string]int `json:"tasks"`
		} `json:"vertices"`
		Plan struct {
			Nodes []struct {
				ID     string `json:"id"`
				Inputs []struct {
					ID           string `json:"id"`
					ShipStrategy string `json:"ship_strategy"`
				} `json:"inputs"`
			} `json:"nodes"`
		} `json:"plan"`
	}
	getJSON(t, base+"/jobs/"+id, 200, &job)
	if len(job.Vertices) != 2 || job.StatusCounts["CREATED"] != 4 || job.Vertices[1].Tasks["CREATED"] != 2 {
		t.Fatalf("/jobs/:id: %+v", job)
	}
	if len(job.Plan.Nodes) != 2 || job.Plan.Nodes[0].ID != job.Vertices[0].ID || job.Plan.Nodes[0].Inputs != nil ||
		len(job.Plan.Nodes[1].Inputs) != 1 || job.Plan.Nodes[1].Inputs[0].ShipStrategy != "REBALANCE" || job.Plan.Nodes[1].Inputs[0].ID != job.Vertices[0].ID {
		t.Errorf("plan: %+v", job.Plan)
	}

	var errBody struct {
		Errors []string `json:"errors"`
	}
	getJSON(t, base+"/no/such/path", 404, &errBody)
	if len(errBody.Errors) != 1 || !strings.Contains(errBody.Errors[0], "/no/such/path") {
		t.Errorf("404 body: %+v", errBody)
	}
	getJSON(t, base+"/jobs/0123", 404, &errBody)

	// The dashboard's cancel button, which needs the web token: a
	// browser that opened the dashboard link holds it as a cookie.
	var empty map[string]any
	getJSON(t, base+"/jobs/"+id+"/yarn-cancel", 401, &errBody)
	browser := dashboardBrowser(t, jm.WebURL())
	getJSONWith(t, browser, base+"/jobs/"+id+"/yarn-cancel", 202, &empty)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var j struct {
			State string `json:"state"`
			End   int64  `json:"end-time"`
		}
		getJSON(t, base+"/jobs/"+id, 200, &j)
		if j.State == "CANCELED" && j.End > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s after cancel", j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var exceptions map[string]any
	getJSON(t, base+"/jobs/"+id+"/exceptions?maxExceptions=10", 200, &exceptions)
	if _, ok := exceptions["exceptionHistory"].(map[string]any); !ok {
		t.Errorf("/exceptions: %v", exceptions)
	}
	var tms map[string][]any
	getJSON(t, base+"/taskmanagers", 200, &tms)
	if tms["taskmanagers"] == nil {
		t.Errorf("/taskmanagers: %v", tms)
	}
}

// dashboardBrowser is an HTTP client that opened a dashboard link.
func dashboardBrowser(t *testing.T, link string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	var landed *http.Request
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error { landed = req; return nil }
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if landed == nil || landed.URL.RawQuery != "" {
		t.Fatalf("the dashboard link %s did not redirect to a link without its token (landed on %v)", link, landed)
	}
	return c
}

// Changing a job over REST takes the deployment's web token: no token, a
// wrong one, or another deployment's is refused with 401 and changes
// nothing; the token as a bearer header or the dashboard link's cookie
// is let through. Off loopback, reading takes the token too.
func TestRESTNeedsTheWebToken(t *testing.T) {
	jm, d := startJM(t, true)
	base := "http://" + jm.RestAddr()
	resp, err := d.SubmitJob(context.Background(), &flinkpb.SubmitJobRequest{JobGraph: plan(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.JobId
	other := testTrust(t)
	call := func(method, path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tok := range []string{"", "bogus", other.WebToken()} {
		for _, r := range [][2]string{{"GET", "/jobs/" + id + "/yarn-cancel"}, {"PATCH", "/jobs/" + id}, {"POST", "/jobs/" + id + "/savepoints"}, {"POST", "/jobs/" + id + "/stop"}, {"DELETE", "/cluster"}} {
			if code := call(r[0], r[1], tok); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r[0], r[1], tok, code)
			}
		}
	}
	if code := call("GET", "/jobs/"+id, ""); code != http.StatusOK {
		t.Errorf("a read on loopback without the token: %d, want 200", code)
	}
	j, err := jm.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	if st := j.Details(false).State; st != "CREATED" {
		t.Fatalf("after refused calls the job is %s, want CREATED", st)
	}
	if code := call("PATCH", "/jobs/"+id+"?mode=cancel", jm.Trust().WebToken()); code != http.StatusAccepted {
		t.Errorf("cancel with the bearer token: %d, want 202", code)
	}

	// Off loopback every request needs the token.
	wide, _ := startJMWith(t, jobmanager.Config{RestAddr: "0.0.0.0:0"})
	_, port, _ := net.SplitHostPort(wide.RestAddr())
	base = "http://127.0.0.1:" + port
	if code := call("GET", "/overview", ""); code != http.StatusUnauthorized {
		t.Errorf("a read off loopback without the token: %d, want 401", code)
	}
	if code := call("GET", "/overview", wide.Trust().WebToken()); code != http.StatusOK {
		t.Errorf("a read off loopback with the token: %d, want 200", code)
	}
	var overview map[string]any
	getJSONWith(t, dashboardBrowser(t, base+"/?token="+wide.Trust().WebToken()), base+"/overview", 200, &overview)
}

// --web-dir serves a dashboard build at /, behind the REST routes.
func TestWebDirServesADashboard(t *testing.T) {
	web := t.TempDir()
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte("<html>dashboard</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web, "main.js"), []byte("console.log(1)"), 0o644); err != nil {
		t.Fatal(err)
	}
	jm, _ := startJMWith(t, jobmanager.Config{WebDir: web})
	base := "http://" + jm.RestAddr()
	for path, want := range map[string]string{"/": "text/html", "/main.js": "text/javascript"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("GET %s: %s %q %q", path, resp.Status, resp.Header.Get("Content-Type"), body)
		}
	}
	var overview map[string]any
	getJSON(t, base+"/overview", 200, &overview)
	var errBody map[string][]string
	getJSON(t, base+"/missing.js", 404, &errBody)
}

// FuzzRESTBodies sends the REST API's request bodies what a caller may:
// every answer is Flink's JSON error or acceptance, never a crash, and the
// JobManager keeps answering.
func FuzzRESTBodies(f *testing.F) {
	f.Add("savepoints", []byte(`{"target-directory":"/tmp/sp","cancel-job":false}`))
	f.Add("stop", []byte(`{"targetDirectory":"/tmp/sp","drain":true}`))
	f.Add("savepoints", []byte(`{"target-directory":`))
	f.Add("stop", []byte(`[1,2,3]`))
	f.Add("savepoints", []byte("\x00\xff"))
	jm, d := startJM(f, true)
	resp, err := d.SubmitJob(context.Background(), &flinkpb.SubmitJobRequest{JobGraph: plan(f)})
	if err != nil {
		f.Fatal(err)
	}
	base, id, tok := "http://"+jm.RestAddr(), resp.JobId, jm.Trust().WebToken()
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		path := "/jobs/" + id + "/savepoints"
		if op == "stop" {
			path = "/jobs/" + id + "/stop"
		}
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("POST %s answered %s with a body that is not JSON: %v", path, resp.Status, err)
		}
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("POST %s: %s %v", path, resp.Status, out)
		}
	})
}

// The Dispatcher keeps a bounded archive of ended jobs: beyond the limit
// the oldest go, and so does every one past the archive's TTL; a job
// still running is kept, whatever its age.
func TestEndedJobsAreArchivedWithinBounds(t *testing.T) {
	jm, d := startJMWith(t, jobmanager.Config{Local: true, MaxArchivedJobs: 2, ArchiveTTL: time.Hour})
	ctx := context.Background()
	running, err := d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: plan(t)})
	if err != nil {
		t.Fatal(err)
	}
	var ended []string
	for range 4 {
		resp, err := d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: plan(t)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.CancelJob(ctx, &flinkpb.CancelJobRequest{JobId: resp.JobId}); err != nil {
			t.Fatal(err)
		}
		ended = append(ended, resp.JobId)
	}
	ids := func() []string {
		var out []string
		for _, j := range jm.Jobs() {
			out = append(out, j.Details(false).JobId)
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(jm.Jobs()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("jobs kept: %v, want the running one and the 2 newest ended", ids())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := jm.Job(ended[0]); err == nil {
		t.Errorf("the oldest ended job %s is still kept: %v", ended[0], ids())
	}
	if _, err := jm.Job(running.JobId); err != nil {
		t.Errorf("the running job was dropped: %v", err)
	}
	jm.Retire(time.Now().Add(2 * time.Hour))
	if got := ids(); len(got) != 1 || got[0] != running.JobId {
		t.Fatalf("past the archive's TTL the jobs kept are %v, want only the running one", got)
	}
}

// An artifact no running job uses is removed once it is old enough that
// no submission can still be on its way with it.
func TestUnusedArtifactsAreRemoved(t *testing.T) {
	jm, d := startJMWith(t, jobmanager.Config{})
	ctx := context.Background()
	data := []byte("a job program")
	sum := sha256.Sum256(data)
	key := &flinkpb.BlobKey{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	up, err := d.UploadBlob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&flinkpb.BlobChunk{Key: key, Data: data}); err != nil {
		t.Fatal(err)
	}
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	fetch := func() error {
		s, err := d.DownloadBlob(ctx, key)
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	jm.Retire(time.Now())
	if err := fetch(); err != nil {
		t.Fatalf("a fresh artifact was removed: %v", err)
	}
	jm.Retire(time.Now().Add(time.Hour))
	if err := fetch(); status.Code(err) != codes.NotFound {
		t.Fatalf("an artifact unused for an hour: %v, want it removed", err)
	}
}
