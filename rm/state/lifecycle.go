package state

import (
	"fmt"
	"slices"

	"github.com/loom-project/loom/proto/yarnpb"
)

// The life cycles of nodes, applications, attempts and containers, as
// transactional helpers the FSM composes. They are deterministic: every id
// and timestamp comes from the command.

// Exit statuses the cluster assigns, with YARN's values.
const (
	ExitAborted             = int32(yarnpb.ContainerExitStatus_EXIT_ABORTED)
	ExitKilledByAM          = int32(yarnpb.ContainerExitStatus_EXIT_KILLED_BY_APPMASTER)
	ExitKilledByRM          = int32(yarnpb.ContainerExitStatus_EXIT_KILLED_BY_RESOURCEMANAGER)
	ExitKilledAfterComplete = int32(yarnpb.ContainerExitStatus_EXIT_KILLED_AFTER_APP_COMPLETION)
	ExitLaunchFailed        = int32(yarnpb.ContainerExitStatus_EXIT_LAUNCH_FAILED)
	ExitPreempted           = int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED)
)

// SubmitApp records a new application and its first attempt.
func (tx *WriteTxn) SubmitApp(app *Application, now int64) error {
	r := tx.Read()
	if r.App(nil, app.ID) != nil {
		return fmt.Errorf("application %s was already submitted", app.ID)
	}
	m := r.Meta()
	m.AppSeq++
	a := *app
	a.Seq = m.AppSeq
	a.State = yarnpb.AppState_APP_ACCEPTED
	a.SubmitTime = now
	if err := tx.PutMeta(m); err != nil {
		return err
	}
	return tx.newAttempt(&a, now)
}

// newAttempt starts the application's next attempt and stores both.
func (tx *WriteTxn) newAttempt(a *Application, now int64) error {
	a.NumAttempts++
	at := &Attempt{
		ID:        yarnpb.AttemptID(a.ID, a.NumAttempts),
		AppID:     a.ID,
		Num:       a.NumAttempts,
		State:     yarnpb.AttemptState_ATTEMPT_NEW,
		StartTime: now,
		// Sequence 1 is the AM container, as in YARN.
		NextContainerSeq: 1,
	}
	a.CurrentAttempt = at.ID
	a.State = yarnpb.AppState_APP_ACCEPTED
	a.Host, a.RPCPort, a.TrackingURL = "", 0, ""
	if err := tx.PutAttempt(at); err != nil {
		return err
	}
	return tx.PutApp(a)
}

// PlaceContainers stores the allocations of a scheduling plan that still
// fit. It returns how many were placed; the rest are dropped because the
// state changed under the scheduler.
func (tx *WriteTxn) PlaceContainers(allocs []*Container) (int, error) {
	r := tx.Read()
	// Nodes and attempts change once per plan, not once per container.
	nodes := map[string]*Node{}
	attempts := map[string]*Attempt{}
	apps := map[string]*Application{} // copies, written once per plan
	placed := 0
	for _, alloc := range allocs {
		node := nodes[alloc.NodeID]
		if node == nil {
			old := r.Node(alloc.NodeID)
			if old == nil {
				continue
			}
			n := *old
			node = &n
		}
		if !node.Schedulable() || !node.Total.Sub(node.Used).Fits(alloc.Resource) {
			continue
		}
		at := attempts[alloc.AttemptID]
		if at == nil {
			old := r.Attempt(nil, alloc.AttemptID)
			if old == nil {
				continue
			}
			a := *old
			at = &a
		}
		if at.Terminal() || r.Container(alloc.ID) != nil {
			continue
		}
		app := apps[at.AppID]
		if app == nil {
			old := r.App(nil, at.AppID)
			if old == nil {
				continue
			}
			a := *old
			app = &a
			apps[at.AppID] = app
		}
		if app.Terminal() || app.CurrentAttempt != at.ID {
			continue
		}
		if alloc.IsAM && (at.State != yarnpb.AttemptState_ATTEMPT_NEW || at.AMContainerID != "") {
			continue
		}
		if alloc.Label != "" && !slices.Contains(node.Labels, alloc.Label) {
			continue // the node lost the label since the plan
		}
		c := *alloc
		c.AppID = app.ID
		c.NodeHTTP = node.HTTPAddress
		c.State = yarnpb.ContainerState_CONTAINER_ALLOCATED
		c.Labeled = len(node.Labels) > 0
		if err := tx.PutContainer(&c); err != nil {
			return placed, err
		}
		app.charge(&c, 1)
		node.Used = node.Used.Add(c.Resource)
		node.NumContainers++
		nodes[node.ID] = node
		if seq := yarnpb.ContainerSeq(c.ID); seq >= at.NextContainerSeq {
			at.NextContainerSeq = seq + 1
		}
		if c.IsAM {
			at.State = yarnpb.AttemptState_ATTEMPT_ALLOCATED
			at.AMContainerID = c.ID
		}
		attempts[at.ID] = at
		placed++
	}
	for _, n := range nodes {
		if err := tx.PutNode(n); err != nil {
			return placed, err
		}
	}
	for _, a := range attempts {
		if err := tx.PutAttempt(a); err != nil {
			return placed, err
		}
	}
	for _, a := range apps {
		if a.NumContainers == 0 {
			continue // nothing placed for it
		}
		if old := r.App(nil, a.ID); old != nil && old.NumContainers == a.NumContainers {
			continue
		}
		if err := tx.PutApp(a); err != nil {
			return placed, err
		}
	}
	return placed, nil
}

// AcquireContainers marks allocated containers as handed to their AM in
// Allocate response response; one handed out before, in a response the
// AM did not get, is marked as handed in this one.
func (tx *WriteTxn) AcquireContainers(ids []string, response int32) error {
	r := tx.Read()
	for _, id := range ids {
		c := r.Container(id)
		if c == nil || (c.State != yarnpb.ContainerState_CONTAINER_ALLOCATED && c.State != yarnpb.ContainerState_CONTAINER_ACQUIRED) {
			continue
		}
		cc := *c
		cc.State = yarnpb.ContainerState_CONTAINER_ACQUIRED
		cc.HandedIn = response
		if err := tx.PutContainer(&cc); err != nil {
			return err
		}
	}
	return nil
}

// CompleteContainer ends a container, frees its resources and carries the
// consequences to its attempt and application.
func (tx *WriteTxn) CompleteContainer(c *Container, exit int32, diag string, now int64) error {
	if c.Completed() {
		return nil
	}
	r := tx.Read()
	cc := *c
	cc.State = yarnpb.ContainerState_CONTAINER_COMPLETED
	cc.ExitStatus = exit
	cc.Diagnostics = diag
	cc.FinishTime = now
	cc.CompletedIndex = tx.index
	if err := tx.PutContainer(&cc); err != nil {
		return err
	}
	if node := r.Node(c.NodeID); node != nil {
		n := *node
		n.Used = n.Used.Sub(c.Resource)
		n.NumContainers--
		if n.NumContainers <= 0 {
			n.NumContainers, n.Used = 0, Resource{}
		}
		if err := tx.PutNode(&n); err != nil {
			return err
		}
	}
	if app := r.App(nil, c.AppID); app != nil {
		a := *app
		a.charge(c, -1)
		if err := tx.PutApp(&a); err != nil {
			return err
		}
	}
	if !c.IsAM {
		return nil
	}
	at := r.Attempt(nil, c.AttemptID)
	if at == nil || at.Terminal() {
		return nil
	}
	if at.Unregistered {
		a := *at
		a.State = yarnpb.AttemptState_ATTEMPT_FINISHED
		a.FinishTime = now
		return tx.PutAttempt(&a)
	}
	return tx.FailAttempt(at, fmt.Sprintf("AM container %s exited with exit code %d. %s", c.ID, exit, diag), now)
}

// FailAttempt ends an attempt that failed (its AM exited, could not be
// launched or stopped heartbeating) and starts the next one, or fails the
// application when it has used all its attempts.
func (tx *WriteTxn) FailAttempt(at *Attempt, diag string, now int64) error {
	if at.Terminal() {
		return nil
	}
	r := tx.Read()
	a := *at
	a.State = yarnpb.AttemptState_ATTEMPT_FAILED
	a.FinishTime = now
	a.Diagnostics = diag
	if err := tx.PutAttempt(&a); err != nil {
		return err
	}
	if am := r.Container(at.AMContainerID); am != nil && !am.Completed() {
		if err := tx.CompleteContainer(am, ExitAborted, "AM attempt failed: "+diag, now); err != nil {
			return err
		}
	}
	app := r.App(nil, at.AppID)
	if app == nil || app.Terminal() {
		return nil
	}
	if !app.KeepContainers {
		for _, c := range r.ContainersByAttempt(nil, at.ID) {
			if err := tx.CompleteContainer(c, ExitKilledByRM, "Container of a failed application attempt", now); err != nil {
				return err
			}
		}
	}
	ap := *app
	if ap.NumAttempts < ap.MaxAttempts {
		ap.Diagnostics = fmt.Sprintf("Attempt %d of %d failed: %s", at.Num, ap.MaxAttempts, diag)
		return tx.newAttempt(&ap, now)
	}
	return tx.FinishApp(&ap, yarnpb.AppState_APP_FAILED, yarnpb.FinalStatus_FAILED,
		fmt.Sprintf("Application %s failed %d times (max attempts %d). Last attempt: %s", ap.ID, ap.NumAttempts, ap.MaxAttempts, diag), now)
}

// FinishApp moves an application to an end state and ends its remaining
// containers. A running AM container is left to exit by itself unless the
// application was killed.
func (tx *WriteTxn) FinishApp(app *Application, st yarnpb.AppState, final yarnpb.FinalStatus, diag string, now int64) error {
	if app.Terminal() {
		return nil
	}
	a := *app
	a.State, a.FinalStatus, a.Diagnostics, a.FinishTime = st, final, diag, now
	if a.Progress < 1 && final == yarnpb.FinalStatus_SUCCEEDED {
		a.Progress = 1
	}
	if err := tx.PutApp(&a); err != nil {
		return err
	}
	r := tx.Read()
	if st == yarnpb.AppState_APP_KILLED {
		// The attempt ends first, so that its AM container ending below is
		// not taken for an AM failure.
		if at := r.Attempt(nil, a.CurrentAttempt); at != nil && !at.Terminal() {
			aa := *at
			aa.State = yarnpb.AttemptState_ATTEMPT_KILLED
			aa.FinishTime = now
			if err := tx.PutAttempt(&aa); err != nil {
				return err
			}
		}
	}
	for _, c := range r.ContainersByApp(nil, a.ID) {
		if c.IsAM && st != yarnpb.AppState_APP_KILLED {
			continue
		}
		exit, why := ExitKilledAfterComplete, "Container killed: the application has finished"
		if st == yarnpb.AppState_APP_KILLED {
			exit, why = ExitKilledByRM, "Container killed: the application was killed"
		}
		if err := tx.CompleteContainer(c, exit, why, now); err != nil {
			return err
		}
	}
	return nil
}

// KillApp kills an application. It reports false when it had already ended.
func (tx *WriteTxn) KillApp(id, diag string, now int64) (bool, error) {
	app := tx.Read().App(nil, id)
	if app == nil {
		return false, fmt.Errorf("application %s not found", id)
	}
	if app.Terminal() {
		return false, nil
	}
	return true, tx.FinishApp(app, yarnpb.AppState_APP_KILLED, yarnpb.FinalStatus_KILLED, diag, now)
}

// RegisterAttempt records an AM's registration: its attempt and
// application are RUNNING.
func (tx *WriteTxn) RegisterAttempt(attemptID, host string, port int32, url string, now int64) error {
	r := tx.Read()
	at := r.Attempt(nil, attemptID)
	if at == nil || at.Terminal() {
		return fmt.Errorf("application attempt %s is not running", attemptID)
	}
	a := *at
	a.State = yarnpb.AttemptState_ATTEMPT_RUNNING
	a.Registered = true
	a.Host, a.RPCPort, a.TrackingURL = host, port, url
	if err := tx.PutAttempt(&a); err != nil {
		return err
	}
	app := r.App(nil, at.AppID)
	if app == nil || app.Terminal() {
		return nil
	}
	ap := *app
	ap.State = yarnpb.AppState_APP_RUNNING
	if ap.StartTime == 0 {
		ap.StartTime = now
	}
	ap.Host, ap.RPCPort, ap.TrackingURL = host, port, url
	return tx.PutApp(&ap)
}

// UnregisterAttempt records an AM's final status; the application ends.
func (tx *WriteTxn) UnregisterAttempt(attemptID string, final yarnpb.FinalStatus, diag, url string, now int64) error {
	r := tx.Read()
	at := r.Attempt(nil, attemptID)
	if at == nil {
		return fmt.Errorf("application attempt %s not found", attemptID)
	}
	a := *at
	a.Unregistered = true
	a.FinalStatus = final
	a.Diagnostics = diag
	if url != "" {
		a.TrackingURL = url
	}
	if err := tx.PutAttempt(&a); err != nil {
		return err
	}
	app := r.App(nil, at.AppID)
	if app == nil {
		return nil
	}
	st := yarnpb.AppState_APP_FINISHED
	switch final {
	case yarnpb.FinalStatus_FAILED:
		st = yarnpb.AppState_APP_FAILED
	case yarnpb.FinalStatus_KILLED:
		st = yarnpb.AppState_APP_KILLED
	}
	ap := *app
	if url != "" {
		ap.TrackingURL = url
	}
	return tx.FinishApp(&ap, st, final, diag, now)
}

// SetNodeState changes a node's state. A node that leaves the cluster
// (LOST, SHUTDOWN, DECOMMISSIONED) takes its containers with it.
func (tx *WriteTxn) SetNodeState(id string, st yarnpb.NodeState, report string, deadline, now int64) error {
	r := tx.Read()
	node := r.Node(id)
	if node == nil {
		return fmt.Errorf("node %s not found", id)
	}
	n := *node
	n.State = st
	n.StateChangedAt = now
	n.DecommissionDeadline = deadline
	if report != "" {
		n.HealthReport = report
	}
	if err := tx.PutNode(&n); err != nil {
		return err
	}
	if n.Live() {
		return nil
	}
	why := "Container released on a node that shut down"
	switch st {
	case yarnpb.NodeState_NODE_LOST:
		why = "Container released on a *lost* node " + id
	case yarnpb.NodeState_NODE_DECOMMISSIONED:
		why = "Container released on a decommissioned node " + id
	}
	for _, c := range r.ContainersByNode(id) {
		if err := tx.CompleteContainer(c, ExitAborted, why, now); err != nil {
			return err
		}
	}
	return nil
}

// RegisterNode adds a node or re-registers a known one. Containers the
// cluster placed on it that the node no longer reports are lost.
func (tx *WriteTxn) RegisterNode(n *Node, reported map[string]bool, now int64) error {
	r := tx.Read()
	if old := r.Node(n.ID); old != nil {
		for _, c := range r.ContainersByNode(n.ID) {
			if !c.Completed() && !reported[c.ID] && c.State != yarnpb.ContainerState_CONTAINER_ALLOCATED && c.State != yarnpb.ContainerState_CONTAINER_ACQUIRED {
				if err := tx.CompleteContainer(c, ExitAborted, "Container not reported by node "+n.ID+" after it registered again", now); err != nil {
					return err
				}
			}
		}
		old = r.Node(n.ID)
		nn := *n
		nn.Used, nn.NumContainers, nn.RegisteredAt = old.Used, old.NumContainers, old.RegisteredAt
		nn.StateChangedAt = now
		return tx.PutNode(&nn)
	}
	nn := *n
	nn.RegisteredAt, nn.StateChangedAt = now, now
	return tx.PutNode(&nn)
}

// ContainerStatuses applies the container states a node reported.
func (tx *WriteTxn) ContainerStatuses(nodeID string, statuses []*yarnpb.ContainerStatus, now int64) error {
	r := tx.Read()
	for _, s := range statuses {
		c := r.Container(s.ContainerId)
		if c == nil || c.NodeID != nodeID || c.Completed() {
			continue
		}
		switch s.State {
		case yarnpb.ContainerState_CONTAINER_RUNNING:
			if c.State == yarnpb.ContainerState_CONTAINER_RUNNING {
				continue
			}
			cc := *c
			cc.State = yarnpb.ContainerState_CONTAINER_RUNNING
			cc.StartTime = now
			if err := tx.PutContainer(&cc); err != nil {
				return err
			}
			if c.IsAM {
				if at := r.Attempt(nil, c.AttemptID); at != nil && at.State == yarnpb.AttemptState_ATTEMPT_ALLOCATED {
					a := *at
					a.State = yarnpb.AttemptState_ATTEMPT_LAUNCHED
					if err := tx.PutAttempt(&a); err != nil {
						return err
					}
				}
			}
		case yarnpb.ContainerState_CONTAINER_COMPLETED:
			if err := tx.CompleteContainer(c, s.ExitStatus, s.Diagnostics, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReleaseContainers ends containers an AM gave back.
func (tx *WriteTxn) ReleaseContainers(attemptID string, ids []string, now int64) error {
	r := tx.Read()
	appID, err := yarnpb.AppIDOfAttempt(attemptID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		c := r.Container(id)
		if c == nil || c.AppID != appID || c.IsAM {
			continue
		}
		if err := tx.CompleteContainer(c, ExitKilledByAM, "Container released by the application", now); err != nil {
			return err
		}
	}
	return nil
}

// SetAppProgress records the progress an AM reported.
func (tx *WriteTxn) SetAppProgress(appID string, progress float32) error {
	app := tx.Read().App(nil, appID)
	if app == nil || app.Terminal() || app.Progress == progress {
		return nil
	}
	a := *app
	a.Progress = progress
	return tx.PutApp(&a)
}

// MoveApp moves a live application to another queue.
func (tx *WriteTxn) MoveApp(appID, queue string) error {
	app := tx.Read().App(nil, appID)
	if app == nil {
		return fmt.Errorf("application %s not found", appID)
	}
	if app.Terminal() {
		return fmt.Errorf("application %s has ended", appID)
	}
	if app.Queue == queue {
		return nil
	}
	a := *app
	a.Queue = queue
	return tx.PutApp(&a)
}
