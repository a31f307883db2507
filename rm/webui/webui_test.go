package webui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
)

// fakeCluster answers from memory; the integration test drives the real
// one in a browser.
type fakeCluster struct {
	apps  []*yarnpb.ApplicationReport
	nodes []*yarnpb.NodeReport
	logs  map[string]string // container/name -> contents
	deny  bool
}

func (f *fakeCluster) Metrics(context.Context) (*yarnpb.ClusterMetricsResponse, error) {
	return &yarnpb.ClusterMetricsResponse{ActiveNodes: int32(len(f.nodes)), Total: &yarnpb.Resource{MemoryMb: 8192, Vcores: 8}, Used: &yarnpb.Resource{MemoryMb: 2048, Vcores: 2}}, nil
}
func (f *fakeCluster) Service(context.Context) (*yarnpb.ServiceStateResponse, error) {
	return &yarnpb.ServiceStateResponse{State: "leader", Id: "rm-1:8032", LeaderAddress: "rm-1:8032", Peers: []*yarnpb.RaftPeer{{Id: "rm-1:8032", Leader: true, Voter: true}}}, nil
}
func (f *fakeCluster) Queues(context.Context) ([]*yarnpb.QueueInfo, error) {
	return []*yarnpb.QueueInfo{{Name: "root.default", Capacity: 1, MaxCapacity: 1, MaxAmShare: 0.5, Partitions: []*yarnpb.QueuePartition{
		{Label: "gpu", Capacity: 0.25, MaxCapacity: 1, Guaranteed: &yarnpb.Resource{MemoryMb: 2048}, Used: &yarnpb.Resource{MemoryMb: 1024, Vcores: 1}, Pending: &yarnpb.Resource{MemoryMb: 3072}},
	}}}, nil
}
func (f *fakeCluster) Nodes(context.Context) ([]*yarnpb.NodeReport, error) { return f.nodes, nil }
func (f *fakeCluster) Apps(context.Context) ([]*yarnpb.ApplicationReport, error) {
	return f.apps, nil
}
func (f *fakeCluster) App(_ context.Context, id string) (*yarnpb.ApplicationReport, error) {
	for _, a := range f.apps {
		if a.Id == id {
			return a, nil
		}
	}
	return nil, errdefs.NotFound("application %s not found", id)
}
func (f *fakeCluster) Logs(_ context.Context, a *yarnpb.ApplicationReport) ([]LogFile, error) {
	if f.deny {
		return nil, errdefs.PermissionDenied("user:eve may not read the logs of %s", a.Id)
	}
	var out []LogFile
	for _, c := range a.Containers {
		for _, n := range []string{"stdout", "stderr"} {
			if s, ok := f.logs[c.Id+"/"+n]; ok {
				out = append(out, LogFile{ContainerID: c.Id, NodeID: c.NodeId, Name: n, Size: int64(len(s))})
			}
		}
	}
	return out, nil
}
func (f *fakeCluster) ReadLog(_ context.Context, _ *yarnpb.ApplicationReport, lf LogFile, offset, limit int64, w io.Writer) error {
	s := f.logs[lf.ContainerID+"/"+lf.Name][offset:]
	if limit >= 0 && int64(len(s)) > limit {
		s = s[:limit]
	}
	_, err := io.WriteString(w, s)
	return err
}

const (
	appA = "application_1700000000000_0001"
	appB = "application_1700000000000_0002"
	ctA1 = "container_e01_1700000000000_0001_01_000001"
	ctA2 = "container_e01_1700000000000_0001_01_000002"
)

func testCluster() *fakeCluster {
	big := strings.Repeat("x", 100<<10) + "THE-END"
	return &fakeCluster{
		nodes: []*yarnpb.NodeReport{
			{Id: "node-1:8041", State: yarnpb.NodeState_NODE_RUNNING, Rack: "/default-rack", Total: &yarnpb.Resource{MemoryMb: 4096, Vcores: 4}, Used: &yarnpb.Resource{MemoryMb: 1024, Vcores: 1}},
			{Id: "node-2:8041", State: yarnpb.NodeState_NODE_LOST, Total: &yarnpb.Resource{MemoryMb: 4096, Vcores: 4}},
		},
		apps: []*yarnpb.ApplicationReport{
			{Id: appA, Name: "<script>alert(1)</script>", User: "alice", Queue: "root.default", Type: "Apache Flink", State: yarnpb.AppState_APP_RUNNING, SubmitTime: 2000, StartTime: 2000,
				TrackingUrl: "http://jm-host:8081/?token=abc",
				Containers: []*yarnpb.Container{
					{Id: ctA1, NodeId: "node-1:8041", IsAm: true, State: yarnpb.ContainerState_CONTAINER_RUNNING, Resource: &yarnpb.Resource{MemoryMb: 1024, Vcores: 1}},
					{Id: ctA2, NodeId: "node-1:8041", State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: 143, Resource: &yarnpb.Resource{MemoryMb: 1024, Vcores: 1}},
				}},
			{Id: appB, Name: "shell", User: "bob", Queue: "root.default", Type: "DSHELL", State: yarnpb.AppState_APP_FINISHED, SubmitTime: 1000, TrackingUrl: "javascript:alert(1)"},
		},
		logs: map[string]string{ctA1 + "/stdout": "hello from the AM\n", ctA1 + "/stderr": big},
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func handler(c Cluster) http.Handler {
	mux := http.NewServeMux()
	u := New(c, hclog.NewNullLogger())
	u.now = func() time.Time { return time.UnixMilli(62000) }
	u.Routes(mux)
	return mux
}

func TestPagesShowTheClusterAndEscapeWhatUsersChose(t *testing.T) {
	h := handler(testCluster())
	for _, tc := range []struct {
		path string
		want []string
		not  []string
	}{
		{"/", []string{"Cluster overview", appA, "8192 MB", "2048 MB (25%)", ">1<", "ApplicationMaster", "1m0s"}, []string{"<script>alert"}},
		{"/ui/nodes", []string{"node-1:8041", "node-2:8041", "3072 MB", "LOST"}, nil},
		{"/ui/nodes?state=lost", []string{"node-2:8041"}, []string{"node-1:8041</a>"}},
		{"/ui/nodes/node-1:8041", []string{"/default-rack", "1024 MB used of 4096 MB"}, nil},
		{"/ui/apps", []string{appA, appB, "2 applications."}, []string{"<script>alert", "javascript:"}},
		{"/ui/apps?state=RUNNING", []string{appA, "1 application."}, []string{appB + "</a>"}},
		{"/ui/apps?user=bob", []string{appB}, []string{appA + "</a>"}},
		{"/ui/apps?q=SHELL", []string{appB}, []string{appA + "</a>"}},
		{"/ui/apps/" + appA, []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "http://jm-host:8081/?token=abc", "Flink dashboard", "TaskManager", "143", logLink(appA, ctA1, "stdout")}, []string{"<script>alert"}},
		{"/ui/apps/" + appB, []string{"Tracking URL</th><td>N/A"}, []string{"javascript:"}},
		{"/ui/apps/" + appA + "/logs", []string{logLink(appA, ctA1, "stderr"), "100.0 KiB"}, nil},
		{"/ui/apps/" + appA + "/logs/" + ctA1 + "/stdout", []string{"hello from the AM", "Bytes 0 to 18 of 18."}, nil},
		{"/ui/scheduler", []string{"root.default", "100%", "50%", "<td>root.default</td><td>gpu</td><td>25% (2048 MB)</td>", "<td>50%</td><td>1024 MB</td><td>1</td><td>3072 MB</td>"}, nil},
	} {
		code, body, hdr := get(t, h, tc.path)
		if code != http.StatusOK {
			t.Errorf("%s: %d\n%s", tc.path, code, body)
			continue
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q allows more than styles of its own", tc.path, csp)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no %q in\n%s", tc.path, w, body)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(body, n) {
				t.Errorf("%s: %q in\n%s", tc.path, n, body)
			}
		}
	}
}

func TestLogPageShowsTheTailThenTheWholeLog(t *testing.T) {
	h := handler(testCluster())
	path := logLink(appA, ctA1, "stderr")
	size := 100<<10 + len("THE-END")
	_, body, _ := get(t, h, path)
	if want := fmt.Sprintf("Bytes %d to %d of %d.", size-tailBytes, size, size); !strings.Contains(body, want) || !strings.Contains(body, "THE-END") {
		t.Fatalf("the tail: no %q and the log's end in\n%.400s", want, body)
	}
	_, body, _ = get(t, h, path+"?start=0")
	if want := fmt.Sprintf("Bytes 0 to %d of %d.", size, size); !strings.Contains(body, want) {
		t.Fatalf("from the start: no %q", want)
	}
	code, raw, hdr := get(t, h, path+"?raw=1")
	if code != 200 || len(raw) != size || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("raw: %d, %d bytes, %s", code, len(raw), hdr.Get("Content-Type"))
	}
}

func TestBadRequestsAreRefusedWithTheReason(t *testing.T) {
	c := testCluster()
	h := handler(c)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/ui/apps/not-an-app", 400, "application"},
		{"/ui/apps/application_1700000000000_0099", 404, "not found"},
		{"/ui/apps?state=BOGUS", 400, "no application state"},
		{"/ui/nodes?state=BOGUS", 400, "no node state"},
		{"/ui/nodes/nowhere:1", 404, "no node"},
		{"/ui/apps?q=" + strings.Repeat("a", 300), 400, "at most 256"},
		{"/ui/apps/" + appA + "/logs/" + ctA1 + "/..%2fsecret", 400, "plain file name"},
		{"/ui/apps/" + appA + "/logs/container_e01_1700000000000_0002_01_000001/stdout", 400, "not a container id of"},
		{"/ui/apps/" + appA + "/logs/" + ctA2 + "/stdout", 404, "has no log"},
		{"/ui/apps/" + appA + "/logs/" + ctA1 + "/stdout?start=-1", 400, "byte offset"},
	} {
		code, body, _ := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.path, code, tc.code, tc.want, body)
		}
	}
	c.deny = true
	if code, body, _ := get(t, h, "/ui/apps/"+appA+"/logs"); code != 403 || !strings.Contains(body, "may not read the logs") {
		t.Errorf("logs of another user's application: %d\n%s", code, body)
	}
}

func TestAppsPageListsTheNewestWhenThereAreMany(t *testing.T) {
	c := &fakeCluster{}
	for i := range maxAppRows + 20 {
		c.apps = append(c.apps, &yarnpb.ApplicationReport{Id: fmt.Sprintf("application_1700000000000_%04d", i+1), SubmitTime: int64(i), State: yarnpb.AppState_APP_FINISHED})
	}
	_, body, _ := get(t, handler(c), "/ui/apps")
	if want := fmt.Sprintf("The newest %d of %d applications.", maxAppRows, maxAppRows+20); !strings.Contains(body, want) {
		t.Fatalf("no %q", want)
	}
	if !strings.Contains(body, "application_1700000000000_0520") || strings.Contains(body, "application_1700000000000_0001<") {
		t.Fatal("the page does not list the newest applications")
	}
}
