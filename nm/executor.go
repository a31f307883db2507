package nm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
)

// Exit statuses the NM assigns, with YARN's values.
const (
	exitPmem         = int32(yarnpb.ContainerExitStatus_EXIT_KILLED_EXCEEDED_PMEM)
	exitLocalization = int32(yarnpb.ContainerExitStatus_EXIT_LOCALIZATION_FAILED)
	exitLaunch       = int32(yarnpb.ContainerExitStatus_EXIT_LAUNCH_FAILED)
)

// container is one container on this node.
type container struct {
	id     string
	appID  string
	user   string
	res    *yarnpb.Resource
	launch *yarnpb.ContainerLaunchContext
	work   string
	logs   string

	mu        sync.Mutex
	state     yarnpb.ContainerState
	exit      int32
	diag      string
	pid       int
	cg        *containerGroup
	stopping  bool   // a stop was asked for
	killDiag  string // why the NM killed it, when it did
	killExit  int32
	cancel    context.CancelFunc // cancels localization
	done      chan struct{}
	started   time.Time
	peakBytes int64
}

// notePeak records a memory reading and returns the peak so far.
func (c *container) notePeak(bytes ...int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bytes {
		c.peakBytes = max(c.peakBytes, b)
	}
	return c.peakBytes
}

func (c *container) status() *yarnpb.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &yarnpb.ContainerStatus{ContainerId: c.id, State: c.state, ExitStatus: c.exit, Diagnostics: c.diag}
}

// executor launches, monitors and stops container processes.
type executor struct {
	logger   hclog.Logger
	dir      string
	cg       *cgroups
	loc      *localizer
	grace    time.Duration
	baseEnv  map[string]string
	metrics  *nmMetrics
	onChange func()
	ctx      context.Context
	wg       sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container
}

// ownerFile, in an application's log directory, names the user the
// application's containers ran for, so its logs stay theirs after the
// containers end.
const ownerFile = ".user"

func (e *executor) workDir(appID, id string) string { return filepath.Join(e.dir, "apps", appID, id) }
func (e *executor) logDir(appID, id string) string  { return filepath.Join(e.dir, "logs", appID, id) }

// start validates a start request and launches the container in the
// background: localization, then the process.
func (e *executor) start(req *yarnpb.StartContainerRequest) error {
	appID, err := yarnpb.AppIDOfContainer(req.ContainerId)
	if err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	if req.ApplicationId != "" && req.ApplicationId != appID {
		return errdefs.InvalidArgument("container %s does not belong to application %s", req.ContainerId, req.ApplicationId)
	}
	lc := req.LaunchContext
	if lc == nil || len(lc.Command) == 0 || lc.Command[0] == "" {
		return errdefs.InvalidArgument("container %s has no command", req.ContainerId)
	}
	if req.Resource.GetMemoryMb() <= 0 {
		return errdefs.InvalidArgument("container %s needs a positive memory size, got %d MB", req.ContainerId, req.Resource.GetMemoryMb())
	}
	if err := validateLaunch(req.ContainerId, lc); err != nil {
		return err
	}
	c := &container{
		id: req.ContainerId, appID: appID, user: req.User, res: req.Resource, launch: lc,
		work: e.workDir(appID, req.ContainerId), logs: e.logDir(appID, req.ContainerId),
		state: yarnpb.ContainerState_CONTAINER_NEW, done: make(chan struct{}),
	}
	e.mu.Lock()
	if e.containers[c.id] != nil {
		e.mu.Unlock()
		return errdefs.AlreadyExists("container %s was already started on this node", c.id)
	}
	if e.ctx.Err() != nil {
		e.mu.Unlock()
		return errdefs.Unavailable("the NodeManager is shutting down")
	}
	e.containers[c.id] = c
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		e.run(c)
	}()
	return nil
}

// credentialsDir is the directory in a container's work dir that holds
// its credentials.
const credentialsDir = ".credentials"

func validateLaunch(id string, lc *yarnpb.ContainerLaunchContext) error {
	if err := lc.Validate(); err != nil {
		return errdefs.InvalidArgument("container %s: %v", id, err)
	}
	for _, r := range lc.LocalResources {
		if r.Name == credentialsDir {
			return errdefs.InvalidArgument("container %s: local resource name %q is where its credentials go", id, r.Name)
		}
	}
	return nil
}

// writeCredentials writes a container's credentials where only it (and
// root) may read them.
func writeCredentials(work string, creds map[string][]byte) error {
	dir := filepath.Join(work, credentialsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range creds {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (e *executor) get(id string) *container {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.containers[id]
}

func (e *executor) all() []*container {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*container, 0, len(e.containers))
	for _, c := range e.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// forget drops completed containers the RM has recorded.
func (e *executor) forget(ids []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if c := e.containers[id]; c != nil && c.status().State == yarnpb.ContainerState_CONTAINER_COMPLETED {
			delete(e.containers, id)
		}
	}
}

func (e *executor) complete(c *container, exit int32, diag string) {
	c.mu.Lock()
	c.state, c.exit, c.diag = yarnpb.ContainerState_CONTAINER_COMPLETED, exit, diag
	c.mu.Unlock()
	close(c.done)
	e.logger.Debug("container completed", "container_id", c.id, "exit_status", exit, "diagnostics", diag)
	e.onChange()
}

// run takes a container from localization to completion.
func (e *executor) run(c *container) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	c.mu.Lock()
	c.cancel = cancel
	stopped := c.stopping
	c.mu.Unlock()
	if stopped {
		e.complete(c, int32(yarnpb.ContainerExitStatus_EXIT_ABORTED), "Container stopped before it started")
		return
	}
	for _, d := range []string{c.work, c.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			e.complete(c, exitLaunch, fmt.Sprintf("creating %s: %v", d, err))
			return
		}
	}
	began := time.Now()
	err := e.loc.localize(ctx, c.work, c.launch.LocalResources)
	e.metrics.localized(began, err)
	if err != nil {
		e.complete(c, exitLocalization, "Resource localization failed: "+err.Error())
		return
	}
	if len(c.launch.Credentials) > 0 {
		if err := writeCredentials(c.work, c.launch.Credentials); err != nil {
			e.complete(c, exitLaunch, "writing the container's credentials: "+err.Error())
			return
		}
	}
	if c.user != "" {
		_ = os.WriteFile(filepath.Join(filepath.Dir(c.logs), ownerFile), []byte(c.user), 0o644)
	}
	cmd, err := e.command(c)
	if err != nil {
		e.complete(c, exitLaunch, err.Error())
		return
	}
	memBytes := c.res.GetMemoryMb() << 20
	if e.cg != nil {
		g, err := e.cg.create(c.id, memBytes, c.res.GetVcores())
		if err != nil {
			e.logger.Warn("cgroup setup failed; falling back to RSS monitoring", "container_id", c.id, "error", err)
		} else {
			c.cg = g
		}
	}
	var release *os.File
	if c.cg != nil {
		if release, err = gate(cmd); err != nil {
			e.closeFiles(cmd)
			e.cleanupGroup(c)
			e.complete(c, exitLaunch, "container failed to launch: "+err.Error())
			return
		}
	}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		if release != nil {
			release.Close()
		}
		e.closeFiles(cmd)
		e.cleanupGroup(c)
		e.complete(c, int32(yarnpb.ContainerExitStatus_EXIT_ABORTED), "Container stopped before it started")
		return
	}
	err = cmd.Start()
	e.metrics.started(err)
	if err == nil {
		c.pid = cmd.Process.Pid
		c.state = yarnpb.ContainerState_CONTAINER_RUNNING
		c.started = time.Now()
		if c.cg != nil {
			if err := c.cg.add(c.pid); err != nil {
				e.logger.Warn("placing container in its cgroup failed", "container_id", c.id, "error", err)
			}
		}
		if release != nil {
			// In its cgroup: the container's command may run now.
			_, _ = release.Write([]byte("go\n"))
		}
		_ = os.WriteFile(e.pgidFile(c.id), []byte(fmt.Sprintf("%d %d", c.pid, startTime(c.pid))), 0o644)
	}
	c.mu.Unlock()
	if release != nil {
		release.Close()
	}
	e.closeFiles(cmd)
	if err != nil {
		e.cleanupGroup(c)
		e.complete(c, exitLaunch, fmt.Sprintf("Container failed to launch %q: %v", c.launch.Command[0], err))
		return
	}
	e.logger.Debug("container started", "container_id", c.id, "pid", c.pid)
	e.onChange()

	werr := cmd.Wait()
	exit, diag := exitOf(cmd, werr)
	// The container is its process group: nothing of it outlives the main
	// process.
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	oomKilled := false
	if c.cg != nil {
		_, peak, ooms := c.cg.usage()
		c.notePeak(peak)
		oomKilled = ooms > 0
	}
	e.cleanupGroup(c)
	_ = os.Remove(e.pgidFile(c.id))
	c.mu.Lock()
	killExit, killDiag, stopping := c.killExit, c.killDiag, c.stopping
	c.mu.Unlock()
	switch {
	case killDiag != "":
		exit, diag = killExit, killDiag
	case oomKilled:
		exit, diag = exitPmem, pmemDiag(c, c.notePeak(), memBytes)
	case stopping:
		diag = fmt.Sprintf("Container killed on request. Exit code is %d", exit)
	}
	e.complete(c, exit, diag)
}

func (e *executor) pgidFile(id string) string { return filepath.Join(e.dir, "run", id+".pgid") }

func (e *executor) cleanupGroup(c *container) {
	if c.cg != nil {
		c.cg.remove()
	}
}

func (e *executor) closeFiles(cmd *exec.Cmd) {
	for _, f := range []any{cmd.Stdout, cmd.Stderr} {
		if f, ok := f.(*os.File); ok {
			_ = f.Close()
		}
	}
	for _, f := range cmd.ExtraFiles {
		_ = f.Close()
	}
}

func pmemDiag(c *container, used, limit int64) string {
	return fmt.Sprintf("Container [pid=%d,containerID=%s] is running beyond physical memory limits. Current usage: %s of %s physical memory used. Killing container.",
		c.pid, c.id, humanBytes(used), humanBytes(limit))
}

func humanBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KB", b>>10)
}

// exitOf turns a wait result into YARN's exit status: the exit code, or
// 128 + the signal that ended the process.
func exitOf(cmd *exec.Cmd, err error) (int32, string) {
	if cmd.ProcessState == nil {
		return exitLaunch, fmt.Sprintf("waiting for the container: %v", err)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return int32(cmd.ProcessState.ExitCode()), ""
	}
	if ws.Signaled() {
		return int32(128 + ws.Signal()), fmt.Sprintf("Container exited on signal %s. Exit code is %d", ws.Signal(), 128+int(ws.Signal()))
	}
	code := int32(ws.ExitStatus())
	if code != 0 {
		return code, fmt.Sprintf("Exception from container-launch. Exit code: %d", code)
	}
	return 0, ""
}

// command builds the container's process: its own process group, its
// working directory, its env and its log files.
func (e *executor) command(c *container) (*exec.Cmd, error) {
	env := map[string]string{}
	for k, v := range e.baseEnv {
		env[k] = v
	}
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range c.launch.Env {
		env[k] = v
	}
	// What the node says of the container, after what its AM asked for:
	// a container cannot lie about who it is.
	env["LOOM_CONTAINER_ID"] = c.id
	env["LOOM_APPLICATION_ID"] = c.appID
	env["LOOM_LOG_DIR"] = c.logs
	env["LOOM_CONTAINER_MEMORY_MB"] = strconv.FormatInt(c.res.GetMemoryMb(), 10)
	env["LOOM_CONTAINER_VCORES"] = strconv.Itoa(int(c.res.GetVcores()))
	env["PWD"] = c.work
	delete(env, "LOOM_CREDENTIALS")
	if len(c.launch.Credentials) > 0 {
		env["LOOM_CREDENTIALS"] = filepath.Join(c.work, credentialsDir)
	}
	argv := c.launch.Command
	path := argv[0]
	if strings.HasPrefix(path, "./") {
		path = filepath.Join(c.work, path)
	} else if !strings.Contains(path, "/") {
		p, err := lookPath(path, env["PATH"])
		if err != nil {
			return nil, fmt.Errorf("container failed to launch: %q not found on PATH %s", path, env["PATH"])
		}
		path = p
	}
	stdout, err := os.OpenFile(filepath.Join(c.logs, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	stderr, err := os.OpenFile(filepath.Join(c.logs, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Dir: c.work, Stdout: stdout, Stderr: stderr}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	// Its own process group, so that a stop reaches every process of it;
	// killed with the NM if the NM dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// gate makes cmd wait, before its first instruction, for a line on the
// returned pipe: the NM writes it once the process is in its cgroup, so
// that nothing it forks escapes its limits. A shell holds the place (it
// reads the line, then execs the command in its own process, same pid);
// if the NM goes away first the read fails and the container never runs.
func gate(cmd *exec.Cmd) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	fd := 2 + len(cmd.ExtraFiles)
	script := fmt.Sprintf(`read -r _ <&%d || exit 126; exec %d<&-; exec "$0" "$@"`, fd, fd)
	cmd.Args = append([]string{"sh", "-c", script, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	return w, nil
}

func lookPath(file, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// stop stops a container: SIGTERM to its process group, SIGKILL after the
// grace period. It returns at once; the container completes later.
func (e *executor) stop(id string) error {
	c := e.get(id)
	if c == nil {
		return errdefs.NotFound("container %s is not on this node", id)
	}
	e.kill(c, 0, "")
	return nil
}

// kill stops c; a non-empty diag records why the NM killed it.
func (e *executor) kill(c *container, exit int32, diag string) {
	c.mu.Lock()
	if c.state == yarnpb.ContainerState_CONTAINER_COMPLETED || c.stopping {
		if diag != "" && c.killDiag == "" && c.state != yarnpb.ContainerState_CONTAINER_COMPLETED {
			c.killExit, c.killDiag = exit, diag
		}
		c.mu.Unlock()
		return
	}
	c.stopping = true
	if diag != "" {
		c.killExit, c.killDiag = exit, diag
	}
	pid, cg, cancel := c.pid, c.cg, c.cancel
	c.mu.Unlock()
	if pid == 0 {
		if cancel != nil {
			cancel()
		}
		return
	}
	sig := syscall.SIGTERM
	if diag != "" {
		sig = syscall.SIGKILL // a limit breach gets no grace
	}
	_ = syscall.Kill(-pid, sig)
	if cg != nil {
		cg.signal(sig)
	}
	if sig == syscall.SIGKILL {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-c.done:
		case <-time.After(e.grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			if cg != nil {
				cg.signal(syscall.SIGKILL)
			}
		}
	}()
}

// stopAll stops every container and waits until all have completed or
// the deadline passes.
func (e *executor) stopAll(ctx context.Context) {
	cs := e.all()
	for _, c := range cs {
		e.kill(c, 0, "")
	}
	for _, c := range cs {
		select {
		case <-c.done:
		case <-ctx.Done():
			return
		}
	}
}

// monitor enforces memory limits every interval until ctx ends: with
// cgroups the kernel holds the limit and an OOM kill ends the container;
// without them the process group's RSS is summed from /proc.
func (e *executor) monitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range e.all() {
			c.mu.Lock()
			running := c.state == yarnpb.ContainerState_CONTAINER_RUNNING && !c.stopping
			pid, cg := c.pid, c.cg
			c.mu.Unlock()
			if !running {
				continue
			}
			limit := c.res.GetMemoryMb() << 20
			if cg != nil {
				cur, peak, ooms := cg.usage()
				c.notePeak(peak, cur)
				if ooms > 0 {
					e.logger.Warn("container over its memory limit", "container_id", c.id, "limit_mb", c.res.GetMemoryMb())
					e.kill(c, exitPmem, pmemDiag(c, max(peak, limit), limit))
				}
				continue
			}
			rss, _ := groupRSS(pid)
			c.notePeak(rss)
			if rss > limit {
				e.logger.Warn("container over its memory limit", "container_id", c.id, "rss_mb", rss>>20, "limit_mb", c.res.GetMemoryMb())
				e.kill(c, exitPmem, pmemDiag(c, rss, limit))
			}
		}
	}
}

// removeApp deletes an ended application's working directories and
// reports whether it did. Its logs stay readable for the log retention.
func (e *executor) removeApp(appID string) bool {
	if _, _, err := yarnpb.ParseAppID(appID); err != nil {
		return false
	}
	for _, c := range e.all() {
		if c.appID == appID && c.status().State != yarnpb.ContainerState_CONTAINER_COMPLETED {
			return false // still stopping: the next heartbeat asks again
		}
	}
	if err := os.RemoveAll(filepath.Join(e.dir, "apps", appID)); err != nil {
		e.logger.Warn("removing application directories failed", "app_id", appID, "error", err)
		return false
	}
	return true
}

// appsWithDirs lists applications that have working directories here.
func (e *executor) appsWithDirs() []string {
	entries, _ := os.ReadDir(filepath.Join(e.dir, "apps"))
	var out []string
	for _, en := range entries {
		if en.IsDir() {
			out = append(out, en.Name())
		}
	}
	return out
}

// sweepStale kills process groups recorded by an earlier NM on this dir
// that died without stopping its containers: each one that is still the
// group it recorded. A group's id is its leader's pid, which the kernel
// does not hand out again while the group has a member; so the group is
// the container's when its leader still runs with the start time
// recorded, or is gone (its members, if any, are the container's), and
// is someone else's when the pid runs with another start time.
func (e *executor) sweepStale() int {
	dir := filepath.Join(e.dir, "run")
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err == nil {
			var pgid int
			var started uint64
			if k, _ := fmt.Sscan(string(b), &pgid, &started); k >= 1 && pgid > 1 {
				if now := startTime(pgid); now == 0 || k < 2 || now == started {
					if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
						n++
					}
				} else {
					e.logger.Warn("not stopping a recorded process group: its id is another process's now", "pgid", pgid, "file", en.Name())
				}
			}
		}
		_ = os.Remove(filepath.Join(dir, en.Name()))
	}
	if e.cg != nil {
		n += e.cg.sweep()
	}
	return n
}
