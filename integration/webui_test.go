package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browser finds Chromium. Without one the browser tests skip, unless
// LOOM_REQUIRE_BROWSER is set (CI installs Debian's chromium and sets
// it), when they fail.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LOOM_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH, and LOOM_REQUIRE_BROWSER is set (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: the web UI's browser test needs one (apt-get install chromium)")
	return ""
}

// startUI runs `loom ui` with the client config conf and returns the link
// it printed.
func startUI(t *testing.T, c *cluster, conf string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, loomBin, "ui", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "LOOM_RM="+c.rmAddr, "LOOM_CONFIG="+conf)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	link := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/\?token=[0-9a-f]+`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindString(sc.Text()); m != "" {
				link <- m
			}
		}
		close(link)
	}()
	select {
	case l, ok := <-link:
		if !ok {
			t.Fatalf("loom ui printed no link: %s", stderr.String())
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("loom ui printed no link within 30s: %s", stderr.String())
	}
	return ""
}

// userConfig makes a certificate and a client config for user, as an
// admin would with `loom tls`.
func userConfig(t *testing.T, c *cluster, user string) string {
	t.Helper()
	tlsDir := filepath.Join(c.dir, "tls")
	dir := t.TempDir()
	c.mustLoom("tls", "cert", "create", "--client", "--user", user, "--dir", dir, "--ca", filepath.Join(tlsDir, "ca.pem"), "--ca-key", filepath.Join(tlsDir, "ca-key.pem"))
	conf := filepath.Join(dir, "loom.conf")
	c.mustLoom("tls", "config", "--rm", c.rmAddr, "--ca", filepath.Join(tlsDir, "ca.pem"), "--cert", filepath.Join(dir, "user-"+user+".pem"),
		"--key", filepath.Join(dir, "user-"+user+"-key.pem"), "--path", conf)
	return conf
}

// The cluster's web UI in a real browser: the overview shows a running
// application, its page lists its containers with links to their logs,
// a log shows what the container wrote, and still does after the
// application was killed. The pages load their style under their
// content security policy, and the browser reports no error. Another
// user sees the application but not its logs.
func TestWebUIInABrowser(t *testing.T) {
	chromium := browser(t)
	c := startCluster(t, clusterOpts{nodes: 2})
	m := "webui-" + marker()
	out := c.mustLoom("dshell", "-d", "--num-containers", "2", "--memory-mb", "64", "--name", "ui <probe>", "--", "sh", "-c", "echo "+m+" $LOOM_CONTAINER_ID; exec sleep 600")
	appID := strings.TrimSpace(out)
	var tasks []containerJSON
	waitFor(t, 60*time.Second, "the dshell's two containers RUNNING", func() (bool, string) {
		a := c.app(appID)
		tasks = tasks[:0]
		for _, ct := range a.Containers {
			if !ct.IsAM && ct.State == "RUNNING" {
				tasks = append(tasks, ct)
			}
		}
		return len(tasks) == 2, fmt.Sprintf("%s, containers %+v", a.State, a.Containers)
	})
	link := startUI(t, c, c.clientConfig())
	base := strings.SplitN(link, "/?", 2)[0]

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the UI without its token answered %d, want 401", resp.StatusCode)
	}

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		problems []string
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console error")
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		do(chromedp.WaitVisible(chromedp.CSS(sel)))
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}

	// The link sets the token and lands on the overview.
	do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	}), chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#cluster-metrics")))
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	header, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header")).backgroundColor`))
	if err != nil {
		t.Fatal(err)
	}
	if url != base+"/" {
		t.Errorf("the link landed on %s, want %s/ (without the token)", url, base)
	}
	if header != "rgb(35, 52, 79)" {
		t.Errorf("the header's background is %q: the style sheet did not load", header)
	}
	if s := text("#running-apps"); !strings.Contains(s, appID) || !strings.Contains(s, "ui <probe>") {
		t.Fatalf("the overview's running applications lack %s:\n%s", appID, s)
	}
	if s := text("#node-metrics"); !strings.Contains(s, "2") {
		t.Errorf("the overview's nodes: %s", s)
	}

	// From the overview to the application, by its link.
	do(chromedp.Click(chromedp.CSS(`#running-apps a[href="/ui/apps/`+appID+`"]`)), chromedp.WaitVisible(chromedp.CSS("#containers")))
	if s := text("#app-state"); s != "RUNNING" {
		t.Errorf("the application page says %q, want RUNNING", s)
	}
	s := text("#containers")
	for _, ct := range tasks {
		if !strings.Contains(s, ct.ID) {
			t.Errorf("the containers table lacks %s:\n%s", ct.ID, s)
		}
	}

	// From the application to a container's stdout, by its link.
	logPath := "/ui/apps/" + appID + "/logs/" + tasks[0].ID + "/stdout"
	do(chromedp.Click(chromedp.CSS(`#containers a[href="`+logPath+`"]`)), chromedp.WaitVisible(chromedp.CSS("#log")))
	if s := text("#log"); !strings.Contains(s, m+" "+tasks[0].ID) {
		t.Fatalf("the log page shows %q, want %q", s, m+" "+tasks[0].ID)
	}

	// The nodes page lists both nodes.
	do(chromedp.Navigate(base + "/ui/nodes"))
	s = text("#nodes")
	for _, ct := range tasks {
		if !strings.Contains(s, ct.NodeID) {
			t.Errorf("the nodes page lacks %s:\n%s", ct.NodeID, s)
		}
	}

	// Another user sees the application, not its logs.
	eve := startUI(t, c, userConfig(t, c, "eve"))
	eveBase := strings.SplitN(eve, "/?", 2)[0]
	eveToken := strings.SplitN(eve, "token=", 2)[1]
	eveGet := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", eveBase+path, nil)
		req.AddCookie(&http.Cookie{Name: "loom_ui", Value: eveToken})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := eveGet("/ui/apps/" + appID); code != 200 || !strings.Contains(body, tasks[0].ID) || strings.Contains(body, m) {
		t.Errorf("eve's view of the application: %d\n%s", code, body)
	}
	if code, body := eveGet(logPath); code != http.StatusForbidden || !strings.Contains(body, "may not read the logs") {
		t.Errorf("eve's view of the application's log: %d, want 403 saying why\n%s", code, body)
	}

	// The logs outlive the containers.
	c.mustLoom("app", "kill", appID)
	waitFor(t, 30*time.Second, "the application KILLED", func() (bool, string) {
		a := c.app(appID)
		return a.State == "KILLED", a.State
	})
	do(chromedp.Navigate(base + logPath))
	if s := text("#log"); !strings.Contains(s, m+" "+tasks[0].ID) {
		t.Errorf("after the kill the log page shows %q", s)
	}
	do(chromedp.Navigate(base + "/ui/apps?state=KILLED"))
	if s := text("#apps"); !strings.Contains(s, appID) {
		t.Errorf("the KILLED applications lack %s:\n%s", appID, s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the browser reported: %s", strings.Join(problems, "; "))
	}
}
