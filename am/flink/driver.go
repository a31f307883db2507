package flink

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/flinkrt/resourcemanager"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// TaskManagerSpec is the shape of the TaskManagers an AM starts.
type TaskManagerSpec struct {
	Slots    int
	MemoryMB int64
	VCores   int32
	// Resources are the files a TaskManager container needs: the loom
	// binary (named "loom") and the job artifacts it may run.
	Resources []*yarnpb.LocalResource
	// Artifacts maps the digest of each job artifact among Resources to
	// its name in the container.
	Artifacts map[string]string
	// MaxFailed bounds the TaskManager containers that may fail or be
	// lost within FailureInterval before the driver gives up: a rate, as
	// Flink's failure-rate strategies, so a session that runs for months
	// is not ended by failures spread over them.
	MaxFailed       int
	FailureInterval time.Duration
	// IdleTimeout, when set, returns TaskManagers whose slots have all
	// been free this long (a session's).
	IdleTimeout time.Duration
	// MaxSlots, when set, caps the slots of all TaskManagers together.
	MaxSlots int
	// Spread keeps at most one TaskManager on a node; NodeLabel asks for
	// the nodes of a label.
	Spread    bool
	NodeLabel string
	// Credentials are the application's identity, which every
	// TaskManager container is given (it finds its JobManager through the
	// RM with it).
	Credentials map[string][]byte
}

var _ resourcemanager.Driver = (*Driver)(nil)

// tmPriority is the priority of TaskManager asks: one TaskManager spec,
// one priority.
const tmPriority = 1

// waitNoteAfter is how long asks may go unanswered before the driver says
// why a job still waits.
const waitNoteAfter = 3 * time.Second

// asker is the part of the AM protocol the driver uses
// (*rmclient.AMRMClient).
type asker interface {
	AddContainerRequest(rmclient.ContainerRequest)
	RemoveContainerRequest(rmclient.ContainerRequest)
	ReleaseContainer(id string)
	Available() (*yarnpb.Resource, int32)
}

// nodeManagers starts and stops containers (*nmclient.Client).
type nodeManagers interface {
	Start(ctx context.Context, node string, req *yarnpb.StartContainerRequest) error
	Stop(ctx context.Context, node string, ids ...string) error
	Close() error
}

// taskManagerRegistry is the Flink ResourceManager as the driver sees it.
type taskManagerRegistry interface {
	RemoveTaskManager(id, cause string)
	RemoveIdle(idle time.Duration) []string
}

// Driver is the Flink ResourceManager's cluster driver: it turns missing
// slots into asks for TaskManager containers, starts `loom taskmanager`
// in each container the cluster allocates, releases surplus ones, and
// replaces TaskManagers whose containers are lost or fail to start, up to
// a maximum of failures.
type Driver struct {
	spec   TaskManagerSpec
	log    hclog.Logger
	jmAddr string
	amrm   asker
	nms    nodeManagers
	rm     taskManagerRegistry
	// onStatus receives what the driver is doing about missing slots;
	// onFatal the cause when it gives up.
	onStatus func(string)
	onFatal  func(string)
	// logClient reaches NodeManagers' HTTP ports as the application.
	logClient *http.Client

	mu         sync.Mutex
	wanted     int                     // slots missing, as the Flink RM last said
	asked      int                     // containers asked for, not allocated yet
	askedSince time.Time               // when asked last went from 0 up
	starting   map[string]*tmContainer // allocated; TaskManager not registered yet
	running    map[string]*tmContainer // TaskManager registered
	// unknown are TaskManagers registered before their container was
	// known: one of an earlier attempt can beat adopt.
	unknown map[string]bool
	failed  int
	// failures are when the containers counted in failed failed, within
	// FailureInterval of now.
	failures []time.Time
	now      func() time.Time
	gaveUp   bool
	capped   bool // asks held back by MaxSlots
	closed   bool
	note     string
	launches sync.WaitGroup
	wake     chan struct{}
}

type tmContainer struct {
	id, node string
	// logs is where its NodeManager serves the container's logs.
	logs    string
	started time.Time
	// adopted is set for a container of an earlier AM attempt, whose
	// TaskManager re-registers by itself.
	adopted bool
}

// adoptTimeout is how long a TaskManager of an earlier AM attempt has to
// register with this one before its container is stopped.
const adoptTimeout = 15 * time.Second

func newDriver(spec TaskManagerSpec, log hclog.Logger, nms nodeManagers) *Driver {
	return &Driver{
		spec: spec, log: log, nms: nms,
		starting: map[string]*tmContainer{}, running: map[string]*tmContainer{}, unknown: map[string]bool{},
		onStatus: func(string) {}, onFatal: func(string) {}, wake: make(chan struct{}, 1), now: time.Now,
	}
}

// DefaultFailureInterval is the window in which MaxFailed failures end an
// application.
const DefaultFailureInterval = 10 * time.Minute

func (d *Driver) request() rmclient.ContainerRequest {
	r := rmclient.ContainerRequest{
		Capability: &yarnpb.Resource{MemoryMb: d.spec.MemoryMB, Vcores: d.spec.VCores},
		Priority:   tmPriority,
		NodeLabel:  d.spec.NodeLabel,
	}
	if d.spec.Spread {
		r.MaxPerNode = 1
	}
	return r
}

// SlotsWanted implements resourcemanager.Driver.
func (d *Driver) SlotsWanted(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wanted = n
	d.reconcileLocked()
}

// TaskManagerRegistered implements resourcemanager.Driver.
func (d *Driver) TaskManagerRegistered(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.starting[id]; c != nil {
		delete(d.starting, id)
		d.running[id] = c
		d.log.Info("TaskManager registered", "container", id, "node", c.node, "after", time.Since(c.started).Round(time.Millisecond))
		return
	}
	if d.running[id] == nil {
		d.unknown[id] = true
	}
}

// TaskManagerLost implements resourcemanager.Driver: a TaskManager that
// stopped heartbeating has its container stopped and counts as failed.
func (d *Driver) TaskManagerLost(id, cause string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.unknown, id)
	c := d.running[id]
	if c == nil {
		return
	}
	delete(d.running, id)
	if d.closed {
		return
	}
	d.failLocked(cause)
	d.launches.Add(1)
	go func() {
		defer d.launches.Done()
		_ = d.nms.Stop(context.Background(), c.node, c.id)
	}()
	d.reconcileLocked()
}

// preempted gives back the TaskManager containers the cluster takes back
// from the application (its queue is over its guarantee and another is
// below): each is released at once rather than killed at the end of the
// RM's grace, and its TaskManager removed, so that the job fails over
// now, from its latest checkpoint, onto the slots it has left and those
// it asks for again. A preemption is not a failure of the TaskManager:
// it does not count towards --max-failed-containers.
func (d *Driver) preempted(ids []string) {
	var gone []string
	d.mu.Lock()
	for _, id := range ids {
		c, wasRunning := d.running[id]
		if !wasRunning {
			if c = d.starting[id]; c == nil {
				continue
			}
		}
		delete(d.running, id)
		delete(d.starting, id)
		d.log.Info("the cluster preempts a TaskManager container; giving it back", "container", id, "node", c.node)
		d.amrm.ReleaseContainer(id)
		if wasRunning {
			gone = append(gone, id)
		}
	}
	d.reconcileLocked()
	d.mu.Unlock()
	for _, id := range gone {
		d.rm.RemoveTaskManager(id, "TaskManager container "+id+" was preempted by the cluster's scheduler")
	}
}

// adopt takes over the TaskManager containers of an earlier AM attempt:
// they find this attempt's JobManager through the RM and register again.
func (d *Driver) adopt(cs []*yarnpb.Container) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range cs {
		if c.Priority != tmPriority {
			continue
		}
		tc := &tmContainer{id: c.Id, node: c.NodeId, logs: logsURL(c), started: time.Now(), adopted: true}
		if d.unknown[c.Id] {
			d.running[c.Id] = tc
		} else {
			d.starting[c.Id] = tc
		}
		d.log.Info("took over a TaskManager container of an earlier attempt", "container", c.Id, "node", c.NodeId)
	}
	d.reconcileLocked()
}

// dropUnregisteredAdopted stops the adopted containers whose TaskManagers
// did not register in time; their slots are asked for anew.
func (d *Driver) dropUnregisteredAdopted() {
	d.mu.Lock()
	defer d.mu.Unlock()
	dropped := false
	for id, c := range d.starting {
		if !c.adopted || time.Since(c.started) < adoptTimeout || d.closed {
			continue
		}
		dropped = true
		delete(d.starting, id)
		d.log.Warn("a TaskManager of an earlier attempt did not register; stopping its container", "container", id, "after", adoptTimeout)
		d.amrm.ReleaseContainer(id)
		d.launches.Add(1)
		go func() {
			defer d.launches.Done()
			_ = d.nms.Stop(context.Background(), c.node, c.id)
		}()
	}
	if dropped {
		d.reconcileLocked()
	}
}

// reconcileLocked asks for the containers the missing slots need beyond
// those starting, and withdraws asks no longer needed.
func (d *Driver) reconcileLocked() {
	if d.closed || d.gaveUp || d.amrm == nil {
		return
	}
	deficit := d.wanted - len(d.starting)*d.spec.Slots
	need := 0
	if deficit > 0 {
		need = (deficit + d.spec.Slots - 1) / d.spec.Slots
	}
	d.capped = false
	if d.spec.MaxSlots > 0 {
		room := max(0, d.spec.MaxSlots/d.spec.Slots-len(d.running)-len(d.starting))
		if need > room {
			need, d.capped = room, true
		}
	}
	if need > d.asked {
		if d.asked == 0 {
			d.askedSince = time.Now()
		}
		d.log.Info("asking for TaskManager containers", "count", need-d.asked, "memory_mb", d.spec.MemoryMB, "vcores", d.spec.VCores, "slots_each", d.spec.Slots)
	}
	for ; d.asked < need; d.asked++ {
		d.amrm.AddContainerRequest(d.request())
	}
	for ; d.asked > need; d.asked-- {
		d.amrm.RemoveContainerRequest(d.request())
	}
	d.noteLocked()
}

// MaxSlots implements resourcemanager.SlotCap: the slots of the whole
// TaskManagers --max-slots allows, 0 without a cap.
func (d *Driver) MaxSlots() int {
	if d.spec.MaxSlots <= 0 {
		return 0
	}
	return d.spec.MaxSlots / d.spec.Slots * d.spec.Slots
}

// noteLocked says what the driver is doing about missing slots.
func (d *Driver) noteLocked() {
	var note string
	switch {
	case d.asked > 0 && time.Since(d.askedSince) >= waitNoteAfter:
		note = fmt.Sprintf("%s (%d MB, %s each) %s not allocated after %s",
			plural(d.asked, "TaskManager container"), d.spec.MemoryMB, plural(int(d.spec.VCores), "vcore"), isAre(d.asked), waitNoteAfter)
		if avail, nodes := d.amrm.Available(); avail != nil {
			note += fmt.Sprintf(": the cluster has %d MB and %s free on %s", avail.MemoryMb, plural(int(avail.Vcores), "vcore"), plural(int(nodes), "node"))
		}
		switch {
		case d.spec.Spread:
			note += "; the job waits until containers free up (--spread-taskmanagers puts at most one on a node: it needs as many nodes as TaskManagers)"
		case d.spec.NodeLabel != "":
			note += fmt.Sprintf("; the job waits until containers free up on the nodes labeled %s (--tm-node-label)", d.spec.NodeLabel)
		default:
			note += "; the job waits until containers free up (lower the parallelism or --tm-memory-mb to fit)"
		}
	case d.asked > 0:
		note = fmt.Sprintf("asked the cluster for %s (%d MB, %s, %s each)", plural(d.asked, "TaskManager container"), d.spec.MemoryMB, plural(int(d.spec.VCores), "vcore"), plural(d.spec.Slots, "slot"))
	case d.capped:
		note = fmt.Sprintf("all %d slots the session may have (--max-slots) are taken; the job waits until other jobs free theirs", d.spec.MaxSlots)
	}
	if note != d.note {
		d.note = note
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// run publishes the driver's notes until ctx ends, refreshing the note of
// unanswered asks every second.
func (d *Driver) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.releaseIdle()
			d.dropUnregisteredAdopted()
			d.mu.Lock()
			d.noteLocked()
			d.mu.Unlock()
		case <-d.wake:
		}
		d.mu.Lock()
		note := d.note
		d.mu.Unlock()
		if note != last {
			last = note
			d.onStatus(note)
		}
	}
}

// releaseIdle stops the TaskManagers idle for longer than the idle
// timeout; their logs stay with their NodeManagers.
func (d *Driver) releaseIdle() {
	if d.spec.IdleTimeout <= 0 {
		return
	}
	ids := d.rm.RemoveIdle(d.spec.IdleTimeout)
	if len(ids) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		c := d.running[id]
		if c == nil || d.closed {
			continue
		}
		delete(d.running, id)
		d.log.Info("returning an idle TaskManager", "container", id, "node", c.node, "idle_timeout", d.spec.IdleTimeout)
		d.launches.Add(1)
		go func() {
			defer d.launches.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = d.nms.Stop(ctx, c.node, c.id)
		}()
	}
	d.reconcileLocked()
}

// allocated starts a TaskManager in each container the cluster gives
// while asks are outstanding, and releases the rest.
func (d *Driver) allocated(cs []*yarnpb.Container) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range cs {
		if d.closed || d.gaveUp || d.asked == 0 {
			d.log.Info("releasing a surplus container", "container", c.Id)
			d.amrm.ReleaseContainer(c.Id)
			continue
		}
		d.asked--
		tc := &tmContainer{id: c.Id, node: c.NodeId, logs: logsURL(c), started: time.Now()}
		d.starting[c.Id] = tc
		d.launches.Add(1)
		go func() {
			defer d.launches.Done()
			d.launch(c, tc)
		}()
	}
	d.noteLocked()
}

// logsURL is where a container's NodeManager serves its logs.
func logsURL(c *yarnpb.Container) string {
	if c.NodeHttpAddress == "" {
		return ""
	}
	return "https://" + c.NodeHttpAddress + "/logs/" + c.Id + "/"
}

// TaskManagerLog fetches a log file (stdout, stderr) of the TaskManager
// container tmID from its NodeManager, with the application's identity,
// for Flink's TaskManager log pages; false when tmID is not one of this
// application's TaskManagers.
func (d *Driver) TaskManagerLog(ctx context.Context, tmID, name string, head bool) (*http.Response, bool, error) {
	d.mu.Lock()
	tc := d.running[tmID]
	if tc == nil {
		tc = d.starting[tmID]
	}
	d.mu.Unlock()
	if tc == nil || tc.logs == "" || d.logClient == nil {
		return nil, false, nil
	}
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	req, err := http.NewRequestWithContext(ctx, method, tc.logs+url.PathEscape(name), nil)
	if err != nil {
		return nil, true, err
	}
	resp, err := d.logClient.Do(req)
	return resp, true, err
}

// launch starts `loom taskmanager` in a container.
func (d *Driver) launch(c *yarnpb.Container, tc *tmContainer) {
	host, _, err := net.SplitHostPort(c.NodeId)
	if err != nil {
		host = c.NodeId
	}
	mem := d.spec.MemoryMB
	if mem > 128 {
		mem -= 32 // the TaskManager's own share; its workers get the rest
	}
	cmd := []string{"./loom", "taskmanager",
		"--jobmanager", d.jmAddr,
		"--slots", strconv.Itoa(d.spec.Slots),
		"--memory-mb", strconv.FormatInt(mem, 10),
		"--addr", net.JoinHostPort(host, "0"),
		"--dir", ".",
		"--id", c.Id,
		"--rm-timeout", "30s",
	}
	for digest, name := range d.spec.Artifacts {
		cmd = append(cmd, "--artifact", digest+"="+name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = d.nms.Start(ctx, c.NodeId, &yarnpb.StartContainerRequest{
		ContainerId:   c.Id,
		Resource:      c.Resource,
		Token:         c.Token,
		LaunchContext: &yarnpb.ContainerLaunchContext{Command: cmd, LocalResources: d.spec.Resources, Credentials: d.spec.Credentials},
	})
	if err == nil {
		d.log.Info("TaskManager container started", "container", c.Id, "node", c.NodeId, "in", time.Since(tc.started).Round(time.Millisecond))
		return
	}
	d.amrm.ReleaseContainer(c.Id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.starting[c.Id] != tc {
		return
	}
	delete(d.starting, c.Id)
	if d.closed {
		return
	}
	d.failLocked(fmt.Sprintf("TaskManager container %s could not be started on node %s: %v", c.Id, c.NodeId, err))
	d.reconcileLocked()
}

// completed handles containers that ended: a TaskManager's container
// that exits while the driver runs is a lost TaskManager.
func (d *Driver) completed(sts []*yarnpb.ContainerStatus) {
	var gone []string
	var causes []string
	d.mu.Lock()
	for _, st := range sts {
		c, wasRunning := d.running[st.ContainerId]
		if !wasRunning {
			if c = d.starting[st.ContainerId]; c == nil {
				continue
			}
		}
		delete(d.running, st.ContainerId)
		delete(d.starting, st.ContainerId)
		if d.closed {
			continue
		}
		cause := fmt.Sprintf("TaskManager container %s on node %s exited with code %d", c.id, c.node, st.ExitStatus)
		if st.Diagnostics != "" {
			cause += ": " + st.Diagnostics
		}
		if st.ExitStatus == int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED) {
			d.log.Info("TaskManager container preempted", "container", c.id, "node", c.node)
		} else {
			d.failLocked(cause)
		}
		if wasRunning {
			gone, causes = append(gone, c.id), append(causes, cause)
		}
	}
	d.reconcileLocked()
	d.mu.Unlock()
	// The Flink RM hears of it now, not at the heartbeat timeout.
	for i, id := range gone {
		d.rm.RemoveTaskManager(id, causes[i])
	}
}

// failLocked counts a failed TaskManager container and gives up past the
// maximum.
func (d *Driver) failLocked(cause string) {
	now := d.now()
	window := d.spec.FailureInterval
	if window <= 0 {
		window = DefaultFailureInterval
	}
	d.failures = append(d.failures, now)
	for len(d.failures) > 0 && now.Sub(d.failures[0]) > window {
		d.failures = d.failures[1:]
	}
	d.failed = len(d.failures)
	d.log.Warn("TaskManager container failed", "cause", cause, "failed_recently", d.failed, "max", d.spec.MaxFailed, "within", window)
	if d.failed > d.spec.MaxFailed && !d.gaveUp {
		d.gaveUp = true
		msg := fmt.Sprintf("%s; %d TaskManager containers have failed within %s, more than the %d allowed (--max-failed-containers)", cause, d.failed, window, d.spec.MaxFailed)
		go d.onFatal(msg)
	}
}

// setFatal sets what the driver calls when it gives up.
func (d *Driver) setFatal(fn func(string)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onFatal = fn
}

// Stop stops every TaskManager container and withdraws the asks; it
// returns once the NodeManagers have been told.
func (d *Driver) Stop() {
	d.mu.Lock()
	d.closed = true
	byNode := map[string][]string{}
	for _, m := range []map[string]*tmContainer{d.starting, d.running} {
		for id, c := range m {
			byNode[c.node] = append(byNode[c.node], id)
		}
	}
	if d.amrm != nil {
		for ; d.asked > 0; d.asked-- {
			d.amrm.RemoveContainerRequest(d.request())
		}
	}
	d.mu.Unlock()
	d.launches.Wait()
	var wg sync.WaitGroup
	for node, ids := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := d.nms.Stop(ctx, node, ids...); err != nil {
				d.log.Warn("stopping TaskManager containers", "node", node, "error", err)
			}
		}()
	}
	wg.Wait()
	d.nms.Close()
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
