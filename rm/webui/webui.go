// Package webui is the ResourceManager's web interface for people: the
// cluster's overview, its nodes, its applications with their attempts and
// containers, and the containers' logs, after the information
// architecture of YARN's ResourceManager UI. Pages are rendered on the
// server with html/template; they need no script, so the pages set a
// content security policy that allows none.
//
// The pages read the cluster through a Cluster, with the viewer's
// identity in the request's context, so every check a gRPC client meets
// (who sees an application's tracking URL with its token, who may read a
// container's logs) holds for a browser too.
package webui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
)

// Cluster is what the pages read. Each call carries the viewer's
// identity in ctx.
type Cluster interface {
	Metrics(ctx context.Context) (*yarnpb.ClusterMetricsResponse, error)
	Service(ctx context.Context) (*yarnpb.ServiceStateResponse, error)
	Queues(ctx context.Context) ([]*yarnpb.QueueInfo, error)
	Nodes(ctx context.Context) ([]*yarnpb.NodeReport, error)
	Apps(ctx context.Context) ([]*yarnpb.ApplicationReport, error)
	// App is an application's report with the containers the RM keeps.
	App(ctx context.Context, id string) (*yarnpb.ApplicationReport, error)
	// Logs lists the log files of an application's containers, found on
	// the nodes that ran them (every node when the RM keeps none of its
	// containers any more).
	Logs(ctx context.Context, app *yarnpb.ApplicationReport) ([]LogFile, error)
	// ReadLog copies at most limit bytes of a container's log, from
	// offset, to w.
	ReadLog(ctx context.Context, app *yarnpb.ApplicationReport, f LogFile, offset, limit int64, w io.Writer) error
}

// LogFile is one log file of a container, on the node that keeps it.
type LogFile struct {
	ContainerID string
	NodeID      string
	Name        string
	Size        int64
}

const (
	// tailBytes is how much of a log a log page shows by default: its end.
	tailBytes = 64 << 10
	// pageBytes is the most a log page shows; the raw view has the rest.
	pageBytes = 1 << 20
	// maxAppRows is the most rows the applications page lists, newest
	// first.
	maxAppRows = 500
)

//go:embed templates/*.html static/*
var files embed.FS

// appStates are the states the applications menu filters by, YARN's.
var appStates = []string{"NEW", "SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED"}

// UI serves the pages.
type UI struct {
	cluster Cluster
	logger  hclog.Logger
	pages   map[string]*template.Template
	static  http.Handler
	now     func() time.Time
}

// New returns the web interface over c.
func New(c Cluster, logger hclog.Logger) *UI {
	u := &UI{cluster: c, logger: logger, pages: map[string]*template.Template{}, now: time.Now}
	funcs := template.FuncMap{
		"time":  fmtTime,
		"since": func(ms int64) string { return fmtSince(u.now(), ms) },
		"elapsed": func(start, end int64) string {
			if end <= 0 {
				end = u.now().UnixMilli()
			}
			return fmtElapsed(start, end)
		},
		"mb":         fmtMB,
		"bytes":      fmtBytes,
		"pct":        func(f float32) string { return fmt.Sprintf("%.0f%%", f*100) },
		"usedShare":  func(q interface{ UsedShare() float64 }) string { return fmt.Sprintf("%.0f%%", 100*q.UsedShare()) },
		"share":      fmtShare,
		"state":      func(s fmt.Stringer) string { return yarnpb.StateName(s.String()) },
		"lower":      strings.ToLower,
		"appLink":    func(id string) string { return "/ui/apps/" + url.PathEscape(id) },
		"nodeLink":   func(id string) string { return "/ui/nodes/" + url.PathEscape(id) },
		"logLink":    logLink,
		"role":       role,
		"safeURL":    safeURL,
		"subtract":   func(a, b int64) int64 { return a - b },
		"subtract32": func(a, b int32) int32 { return a - b },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html"))
	for _, p := range []string{"overview", "nodes", "node", "apps", "app", "logs", "log", "scheduler", "error"} {
		u.pages[p] = template.Must(template.Must(base.Clone()).ParseFS(files, "templates/"+p+".html"))
	}
	sub, _ := fs.Sub(files, "static")
	u.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	return u
}

// Routes adds the pages to mux: the overview at / and the rest under
// /ui/ and /static/.
func (u *UI) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", u.overview)
	mux.HandleFunc("GET /ui/{$}", u.overview)
	mux.HandleFunc("GET /ui/nodes", u.nodes)
	mux.HandleFunc("GET /ui/nodes/{id}", u.node)
	mux.HandleFunc("GET /ui/apps", u.apps)
	mux.HandleFunc("GET /ui/apps/{id}", u.app)
	mux.HandleFunc("GET /ui/apps/{id}/logs", u.logs)
	mux.HandleFunc("GET /ui/apps/{id}/logs/{container}/{name}", u.log)
	mux.HandleFunc("GET /ui/scheduler", u.scheduler)
	mux.Handle("GET /static/", u.static)
}

type page struct {
	Title   string
	Section string
	States  []string
	Data    any
}

func (u *UI) render(w http.ResponseWriter, name, title, section string, data any) {
	header(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := u.pages[name].Execute(w, page{Title: title, Section: section, States: appStates, Data: data}); err != nil {
		u.logger.Debug("rendering a page failed", "page", name, "error", err)
	}
}

// header sets what every answer carries: no script, no frames, no
// content sniffing, and no Referer, since a page may link to a tracking
// URL that carries its owner's token.
func header(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// fail answers with an error page whose status follows the error's kind.
func (u *UI) fail(w http.ResponseWriter, err error) {
	err = errdefs.FromGRPC(err)
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		code = http.StatusBadRequest
	case errors.Is(err, errdefs.ErrPermissionDenied), errors.Is(err, errdefs.ErrUnauthenticated):
		code = http.StatusForbidden
	case errors.Is(err, errdefs.ErrUnavailable), errors.Is(err, errdefs.ErrNotLeader):
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	u.render(w, "error", http.StatusText(code), "", err.Error())
}

type overviewData struct {
	Metrics     *yarnpb.ClusterMetricsResponse
	Service     *yarnpb.ServiceStateResponse
	AppsByState []stateCount
	Submitted   int
	Containers  int32
	Running     []*yarnpb.ApplicationReport
}

type stateCount struct {
	State string
	Count int
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, err := u.cluster.Metrics(ctx)
	if err != nil {
		u.fail(w, err)
		return
	}
	svc, err := u.cluster.Service(ctx)
	if err != nil {
		u.fail(w, err)
		return
	}
	apps, err := u.cluster.Apps(ctx)
	if err != nil {
		u.fail(w, err)
		return
	}
	d := overviewData{Metrics: m, Service: svc, Submitted: len(apps)}
	counts := map[string]int{}
	for _, a := range apps {
		counts[yarnpb.StateName(a.State.String())]++
		d.Containers += a.NumContainers
		if a.State == yarnpb.AppState_APP_RUNNING {
			d.Running = append(d.Running, a)
		}
	}
	for _, s := range appStates {
		d.AppsByState = append(d.AppsByState, stateCount{s, counts[s]})
	}
	newestFirst(d.Running)
	u.render(w, "overview", "Cluster overview", "overview", d)
}

type nodesData struct {
	State  string
	States []string
	Nodes  []*yarnpb.NodeReport
}

var nodeStates = []string{"RUNNING", "UNHEALTHY", "DECOMMISSIONING", "DECOMMISSIONED", "LOST", "SHUTDOWN"}

func (u *UI) nodes(w http.ResponseWriter, r *http.Request) {
	state := strings.ToUpper(r.URL.Query().Get("state"))
	if state != "" && !slices.Contains(nodeStates, state) {
		u.fail(w, errdefs.InvalidArgument("no node state %q; states are %s", state, strings.Join(nodeStates, ", ")))
		return
	}
	nodes, err := u.cluster.Nodes(r.Context())
	if err != nil {
		u.fail(w, err)
		return
	}
	d := nodesData{State: state, States: nodeStates}
	for _, n := range nodes {
		if state == "" || yarnpb.StateName(n.State.String()) == state {
			d.Nodes = append(d.Nodes, n)
		}
	}
	sort.Slice(d.Nodes, func(i, j int) bool { return d.Nodes[i].Id < d.Nodes[j].Id })
	u.render(w, "nodes", "Nodes", "nodes", d)
}

type nodeData struct {
	Node *yarnpb.NodeReport
	Apps []*yarnpb.ApplicationReport
}

func (u *UI) node(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	nodes, err := u.cluster.Nodes(r.Context())
	if err != nil {
		u.fail(w, err)
		return
	}
	i := slices.IndexFunc(nodes, func(n *yarnpb.NodeReport) bool { return n.Id == id })
	if i < 0 {
		u.fail(w, errdefs.NotFound("no node %q is known to this cluster", id))
		return
	}
	u.render(w, "node", "Node "+id, "nodes", nodeData{Node: nodes[i]})
}

type appsData struct {
	States []string
	Filter appFilter
	Apps   []*yarnpb.ApplicationReport
	Total  int
	Shown  int
	Users  []string
	Queues []string
	Types  []string
}

type appFilter struct {
	State, User, Queue, Type, Search string
}

func (f appFilter) match(a *yarnpb.ApplicationReport) bool {
	return (f.State == "" || yarnpb.StateName(a.State.String()) == f.State) &&
		(f.User == "" || a.User == f.User) &&
		(f.Queue == "" || a.Queue == f.Queue) &&
		(f.Type == "" || a.Type == f.Type) &&
		(f.Search == "" || strings.Contains(strings.ToLower(a.Id+" "+a.Name), strings.ToLower(f.Search)))
}

func (u *UI) apps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := appFilter{State: strings.ToUpper(q.Get("state")), User: q.Get("user"), Queue: q.Get("queue"), Type: q.Get("type"), Search: q.Get("q")}
	if f.State != "" && !slices.Contains(appStates, f.State) {
		u.fail(w, errdefs.InvalidArgument("no application state %q; states are %s", f.State, strings.Join(appStates, ", ")))
		return
	}
	for _, v := range []string{f.User, f.Queue, f.Type, f.Search} {
		if len(v) > 256 {
			u.fail(w, errdefs.InvalidArgument("a filter is at most 256 bytes"))
			return
		}
	}
	apps, err := u.cluster.Apps(r.Context())
	if err != nil {
		u.fail(w, err)
		return
	}
	d := appsData{States: appStates, Filter: f}
	users, queues, types := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, a := range apps {
		users[a.User], queues[a.Queue], types[a.Type] = true, true, true
		if f.match(a) {
			d.Apps = append(d.Apps, a)
		}
	}
	d.Users, d.Queues, d.Types = sortedKeys(users), sortedKeys(queues), sortedKeys(types)
	newestFirst(d.Apps)
	d.Total = len(d.Apps)
	if len(d.Apps) > maxAppRows {
		d.Apps = d.Apps[:maxAppRows]
	}
	d.Shown = len(d.Apps)
	title := "Applications"
	if f.State != "" {
		title = f.State + " applications"
	}
	u.render(w, "apps", title, "apps", d)
}

type appData struct {
	App *yarnpb.ApplicationReport
}

func (u *UI) app(w http.ResponseWriter, r *http.Request) {
	a, ok := u.loadApp(w, r)
	if !ok {
		return
	}
	sort.Slice(a.Containers, func(i, j int) bool { return a.Containers[i].Id < a.Containers[j].Id })
	u.render(w, "app", "Application "+a.Id, "apps", appData{App: a})
}

// loadApp reads the application the path names, or answers with why not.
func (u *UI) loadApp(w http.ResponseWriter, r *http.Request) (*yarnpb.ApplicationReport, bool) {
	id := r.PathValue("id")
	if _, _, err := yarnpb.ParseAppID(id); err != nil {
		u.fail(w, errdefs.InvalidArgument("%v", err))
		return nil, false
	}
	a, err := u.cluster.App(r.Context(), id)
	if err != nil {
		u.fail(w, err)
		return nil, false
	}
	return a, true
}

type logsData struct {
	App        *yarnpb.ApplicationReport
	Containers []containerLogs
}

type containerLogs struct {
	ID    string
	Node  string
	Files []LogFile
}

func (u *UI) logs(w http.ResponseWriter, r *http.Request) {
	a, ok := u.loadApp(w, r)
	if !ok {
		return
	}
	files, err := u.cluster.Logs(r.Context(), a)
	if err != nil {
		u.fail(w, err)
		return
	}
	d := logsData{App: a}
	for _, f := range files {
		if n := len(d.Containers); n == 0 || d.Containers[n-1].ID != f.ContainerID || d.Containers[n-1].Node != f.NodeID {
			d.Containers = append(d.Containers, containerLogs{ID: f.ContainerID, Node: f.NodeID})
		}
		c := &d.Containers[len(d.Containers)-1]
		c.Files = append(c.Files, f)
	}
	u.render(w, "logs", "Logs of "+a.Id, "apps", d)
}

type logData struct {
	App       *yarnpb.ApplicationReport
	File      LogFile
	From      int64
	To        int64
	Text      string
	Truncated bool
	Whole     string
	Raw       string
}

// log shows one container log: its last 64 KiB, from ?start=N (at most
// 1 MiB), or all of it as plain text with ?raw=1.
func (u *UI) log(w http.ResponseWriter, r *http.Request) {
	a, ok := u.loadApp(w, r)
	if !ok {
		return
	}
	cid, name := r.PathValue("container"), r.PathValue("name")
	if app, err := yarnpb.AppIDOfContainer(cid); err != nil || app != a.Id {
		u.fail(w, errdefs.InvalidArgument("%q is not a container id of %s", cid, a.Id))
		return
	}
	if !yarnpb.PlainName(name) {
		u.fail(w, errdefs.InvalidArgument("log name %q is not a plain file name", name))
		return
	}
	files, err := u.cluster.Logs(r.Context(), a)
	if err != nil {
		u.fail(w, err)
		return
	}
	i := slices.IndexFunc(files, func(f LogFile) bool { return f.ContainerID == cid && f.Name == name })
	if i < 0 {
		u.fail(w, errdefs.NotFound("container %s has no log %q on the nodes that ran it (an ended application's logs stay on its nodes for their --log-retention)", cid, name))
		return
	}
	f := files[i]
	q := r.URL.Query()
	if q.Get("raw") == "1" {
		header(w)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := u.cluster.ReadLog(r.Context(), a, f, 0, -1, w); err != nil {
			u.logger.Debug("reading a log failed", "container_id", cid, "name", name, "error", err)
		}
		return
	}
	from := max(0, f.Size-tailBytes)
	if s := q.Get("start"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			u.fail(w, errdefs.InvalidArgument("start is a byte offset, not %q", s))
			return
		}
		from = min(n, f.Size)
	}
	var b strings.Builder
	if err := u.cluster.ReadLog(r.Context(), a, f, from, pageBytes, &b); err != nil {
		u.fail(w, err)
		return
	}
	link := logLink(a.Id, cid, name)
	d := logData{App: a, File: f, From: from, To: from + int64(b.Len()), Text: b.String(), Whole: link + "?start=0", Raw: link + "?raw=1"}
	d.Truncated = d.To < f.Size
	u.render(w, "log", name+" of "+cid, "apps", d)
}

type schedulerData struct {
	Queues []*yarnpb.QueueInfo
	// Labeled is whether any queue has a labeled partition.
	Labeled bool
}

func (u *UI) scheduler(w http.ResponseWriter, r *http.Request) {
	qs, err := u.cluster.Queues(r.Context())
	if err != nil {
		u.fail(w, err)
		return
	}
	d := schedulerData{Queues: qs}
	for _, q := range qs {
		d.Labeled = d.Labeled || len(q.Partitions) > 0
	}
	u.render(w, "scheduler", "Scheduler", "scheduler", d)
}

func logLink(app, container, name string) string {
	return "/ui/apps/" + url.PathEscape(app) + "/logs/" + url.PathEscape(container) + "/" + url.PathEscape(name)
}

// role names what a container does in its application.
func role(a *yarnpb.ApplicationReport, c *yarnpb.Container) string {
	flink := a.Type == "Apache Flink" // the Flink AM's application type
	switch {
	case c.IsAm && flink:
		return "ApplicationMaster (JobManager)"
	case c.IsAm:
		return "ApplicationMaster"
	case flink:
		return "TaskManager"
	}
	return "task"
}

// safeURL is a link to an http or https address, or "" for anything
// else: an AM registers its tracking URL, and a page must not turn it
// into a script.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return u.String()
}

func newestFirst(apps []*yarnpb.ApplicationReport) {
	sort.SliceStable(apps, func(i, j int) bool {
		if apps[i].SubmitTime != apps[j].SubmitTime {
			return apps[i].SubmitTime > apps[j].SubmitTime
		}
		return apps[i].Id > apps[j].Id
	})
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func fmtTime(ms int64) string {
	if ms <= 0 {
		return "N/A"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 MST")
}

func fmtSince(now time.Time, ms int64) string {
	if ms <= 0 {
		return "never"
	}
	return fmtElapsed(ms, now.UnixMilli()) + " ago"
}

// fmtElapsed is the time from start to end (unix ms), or "N/A".
func fmtElapsed(start, end int64) string {
	if start <= 0 || end < start {
		return "N/A"
	}
	d := time.Duration(end-start) * time.Millisecond
	switch {
	case d < time.Second:
		return d.String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func fmtMB(mb int64) string {
	if mb >= 10<<10 {
		return fmt.Sprintf("%.1f GB", float64(mb)/1024)
	}
	return fmt.Sprintf("%d MB", mb)
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// fmtShare is used as a share of total, as a percentage.
func fmtShare(used, total int64) string {
	if total <= 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", float64(used)*100/float64(total))
}
