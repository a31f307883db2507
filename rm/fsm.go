package rm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/token"
)

// CommandType numbers the raft commands. Append only: the numbers are in
// every raft log on disk.
type CommandType uint8

const (
	CmdBumpEpoch CommandType = iota + 1
	CmdRegisterNode
	CmdSetNodeState
	CmdSubmitApp
	cmdRetiredPlaceContainers // never written by a released RM; CmdPlacePlan replaced it
	CmdAcquireContainers
	CmdContainerStatuses
	CmdRegisterAttempt
	CmdUnregisterAttempt
	CmdFailAttempt
	CmdKillApp
	CmdReleaseContainers
	CmdAppProgress
	CmdPlacePlan
	CmdRotateKey
	CmdForgetApps
	CmdForgetNodes
	CmdForgetContainers
	CmdSetQueues
	CmdMoveApp
	CmdNodeStatuses
	CmdForgetCompleted
)

// Command payloads. Ids and timestamps are computed by the caller, never
// by the FSM, so that applying a command is deterministic.
type (
	bumpEpochCmd struct {
		ClusterTS int64 `json:"ts"`
	}
	registerNodeCmd struct {
		Node     *state.Node `json:"node"`
		Reported []string    `json:"reported,omitempty"`
		Now      int64       `json:"now"`
	}
	setNodeStateCmd struct {
		NodeID string           `json:"node"`
		State  yarnpb.NodeState `json:"state"`
		Report string           `json:"report,omitempty"`
		// Deadline ends a graceful decommission (unix ms).
		Deadline int64 `json:"deadline,omitempty"`
		Now      int64 `json:"now"`
	}
	submitAppCmd struct {
		App *state.Application `json:"app"`
		Now int64              `json:"now"`
	}
	// placePlanCmd is a scheduling plan in compact form: placements that
	// share an attempt and a size form a group; nodes are named once.
	placePlanCmd struct {
		Epoch       int64       `json:"epoch"`
		AllocatedAt int64       `json:"at"`
		Nodes       []string    `json:"nodes"`
		Groups      []placement `json:"groups"`
	}
	placement struct {
		AttemptID           string         `json:"attempt"`
		Resource            state.Resource `json:"res"`
		Priority            int32          `json:"prio,omitempty"`
		AllocationRequestID int64          `json:"arid,omitempty"`
		IsAM                bool           `json:"am,omitempty"`
		// Seqs[i] is the container sequence number placed on
		// Nodes[NodeIdx[i]].
		Seqs    []int64 `json:"seqs"`
		NodeIdx []int32 `json:"nodes"`
	}
	acquireContainersCmd struct {
		IDs []string `json:"ids"`
		// Response is the Allocate response that hands them out.
		Response int32 `json:"response,omitempty"`
	}
	containerStatusesCmd struct {
		NodeID   string                    `json:"node"`
		Statuses []*yarnpb.ContainerStatus `json:"statuses"`
		Now      int64                     `json:"now"`
	}
	registerAttemptCmd struct {
		AttemptID   string `json:"attempt"`
		Host        string `json:"host"`
		RPCPort     int32  `json:"port"`
		TrackingURL string `json:"url"`
		Now         int64  `json:"now"`
	}
	unregisterAttemptCmd struct {
		AttemptID   string             `json:"attempt"`
		FinalStatus yarnpb.FinalStatus `json:"final"`
		Diagnostics string             `json:"diag"`
		TrackingURL string             `json:"url"`
		Now         int64              `json:"now"`
	}
	failAttemptCmd struct {
		AttemptID   string `json:"attempt"`
		Diagnostics string `json:"diag"`
		Now         int64  `json:"now"`
	}
	killAppCmd struct {
		AppID       string `json:"app"`
		Diagnostics string `json:"diag"`
		Now         int64  `json:"now"`
	}
	releaseContainersCmd struct {
		AttemptID string   `json:"attempt"`
		IDs       []string `json:"ids"`
		Now       int64    `json:"now"`
	}
	appProgressCmd struct {
		AppID    string  `json:"app"`
		Progress float32 `json:"progress"`
	}
	// forgetCmd forgets ended applications or departed nodes (IDs);
	// those that have come back to life, or still run a container, are
	// kept.
	forgetCmd struct {
		IDs []string `json:"ids"`
		Now int64    `json:"now"`
	}
	// nodeStatusesCmd is the container changes of many nodes' heartbeats.
	nodeStatusesCmd struct {
		Nodes []containerStatusesCmd `json:"nodes"`
	}
	// setQueuesCmd replaces the queue tree with a queue file's.
	setQueuesCmd struct {
		Filename string `json:"file"`
		Source   []byte `json:"src"`
	}
	// moveAppCmd moves a live application to another leaf queue.
	moveAppCmd struct {
		AppID string `json:"app"`
		Queue string `json:"queue"`
	}
	// rotateKeyCmd makes Key the newest master key.
	rotateKeyCmd struct {
		Key *yarnpb.MasterKey `json:"key"`
	}
)

func (c *rotateKeyCmd) validate() error {
	if c.Key == nil || c.Key.Id == 0 || len(c.Key.Secret) != token.SecretSize {
		return errors.New("carries no valid master key")
	}
	return nil
}

// validate checks what the JSON decoder cannot: that a command names the
// objects it needs.
func (c *registerNodeCmd) validate() error {
	if c.Node == nil || c.Node.ID == "" {
		return errors.New("registers no node")
	}
	return nil
}

func (c *submitAppCmd) validate() error {
	if c.App == nil || c.App.ID == "" {
		return errors.New("submits no application")
	}
	return nil
}

func (c *containerStatusesCmd) validate() error {
	for _, st := range c.Statuses {
		if st == nil {
			return errors.New("holds an empty container status")
		}
	}
	return nil
}

// applyFn applies one decoded command in a write transaction and returns
// the command's result.
type applyFn func(tx *state.WriteTxn, buf []byte) (any, error)

var commands = map[CommandType]applyFn{}

// register adds a command to the registry; T is its payload type.
func register[T any](t CommandType, fn func(tx *state.WriteTxn, cmd *T) (any, error)) {
	commands[t] = func(tx *state.WriteTxn, buf []byte) (any, error) {
		cmd := new(T)
		if err := json.Unmarshal(buf, cmd); err != nil {
			return nil, fmt.Errorf("decoding command %d: %w", t, err)
		}
		if v, ok := any(cmd).(interface{ validate() error }); ok {
			if err := v.validate(); err != nil {
				return nil, fmt.Errorf("command %d: %w", t, err)
			}
		}
		return fn(tx, cmd)
	}
}

func init() {
	register(CmdBumpEpoch, func(tx *state.WriteTxn, c *bumpEpochCmd) (any, error) {
		m := tx.Read().Meta()
		m.Epoch++
		if m.Cluster != 0 && m.Cluster != c.ClusterTS {
			m.Earlier = append([]int64{m.Cluster}, m.Earlier...)
			m.Earlier = m.Earlier[:min(len(m.Earlier), state.MaxEarlierLeaderships)]
		}
		m.Cluster = c.ClusterTS
		return m.Epoch, tx.PutMeta(m)
	})
	register(CmdRegisterNode, func(tx *state.WriteTxn, c *registerNodeCmd) (any, error) {
		reported := make(map[string]bool, len(c.Reported))
		for _, id := range c.Reported {
			reported[id] = true
		}
		return nil, tx.RegisterNode(c.Node, reported, c.Now)
	})
	register(CmdSetNodeState, func(tx *state.WriteTxn, c *setNodeStateCmd) (any, error) {
		return nil, tx.SetNodeState(c.NodeID, c.State, c.Report, c.Deadline, c.Now)
	})
	register(CmdSubmitApp, func(tx *state.WriteTxn, c *submitAppCmd) (any, error) {
		r := tx.Read()
		if err := checkQueueRoom(r, queueTreeOf(r.Meta()), c.App.Queue); err != nil {
			return nil, err
		}
		return nil, tx.SubmitApp(c.App, c.Now)
	})
	register(CmdPlacePlan, func(tx *state.WriteTxn, c *placePlanCmd) (any, error) {
		cs, err := c.containers()
		if err != nil {
			return 0, err
		}
		return tx.PlaceContainers(cs)
	})
	register(CmdAcquireContainers, func(tx *state.WriteTxn, c *acquireContainersCmd) (any, error) {
		return nil, tx.AcquireContainers(c.IDs, c.Response)
	})
	register(CmdContainerStatuses, func(tx *state.WriteTxn, c *containerStatusesCmd) (any, error) {
		return nil, tx.ContainerStatuses(c.NodeID, c.Statuses, c.Now)
	})
	register(CmdRegisterAttempt, func(tx *state.WriteTxn, c *registerAttemptCmd) (any, error) {
		return nil, tx.RegisterAttempt(c.AttemptID, c.Host, c.RPCPort, c.TrackingURL, c.Now)
	})
	register(CmdUnregisterAttempt, func(tx *state.WriteTxn, c *unregisterAttemptCmd) (any, error) {
		return nil, tx.UnregisterAttempt(c.AttemptID, c.FinalStatus, c.Diagnostics, c.TrackingURL, c.Now)
	})
	register(CmdFailAttempt, func(tx *state.WriteTxn, c *failAttemptCmd) (any, error) {
		at := tx.Read().Attempt(nil, c.AttemptID)
		if at == nil {
			return nil, fmt.Errorf("application attempt %s not found", c.AttemptID)
		}
		return nil, tx.FailAttempt(at, c.Diagnostics, c.Now)
	})
	register(CmdKillApp, func(tx *state.WriteTxn, c *killAppCmd) (any, error) {
		return tx.KillApp(c.AppID, c.Diagnostics, c.Now)
	})
	register(CmdReleaseContainers, func(tx *state.WriteTxn, c *releaseContainersCmd) (any, error) {
		return nil, tx.ReleaseContainers(c.AttemptID, c.IDs, c.Now)
	})
	register(CmdAppProgress, func(tx *state.WriteTxn, c *appProgressCmd) (any, error) {
		return nil, tx.SetAppProgress(c.AppID, c.Progress)
	})
	register(CmdForgetApps, func(tx *state.WriteTxn, c *forgetCmd) (any, error) {
		return forgetEach(c, tx.DeleteApp)
	})
	register(CmdForgetNodes, func(tx *state.WriteTxn, c *forgetCmd) (any, error) {
		return forgetEach(c, tx.DeleteNode)
	})
	register(CmdForgetContainers, func(tx *state.WriteTxn, c *forgetCmd) (any, error) {
		return forgetEach(c, func(id string) (bool, error) {
			n, err := tx.DeleteAppContainers(id)
			return n > 0, err
		})
	})
	register(CmdForgetCompleted, func(tx *state.WriteTxn, c *forgetCmd) (any, error) {
		return forgetEach(c, tx.DeleteCompletedContainer)
	})
	register(CmdNodeStatuses, func(tx *state.WriteTxn, c *nodeStatusesCmd) (any, error) {
		for i := range c.Nodes {
			if err := c.Nodes[i].validate(); err != nil {
				return nil, err
			}
			if err := tx.ContainerStatuses(c.Nodes[i].NodeID, c.Nodes[i].Statuses, c.Nodes[i].Now); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	register(CmdSetQueues, func(tx *state.WriteTxn, c *setQueuesCmd) (any, error) {
		r := tx.Read()
		tree, err := checkQueueChange(r, c.Filename, c.Source)
		if err != nil {
			return nil, err
		}
		m := r.Meta()
		m.QueueFile, m.QueueSource = tree.Filename, tree.Source
		return nil, tx.PutMeta(m)
	})
	register(CmdMoveApp, func(tx *state.WriteTxn, c *moveAppCmd) (any, error) {
		r := tx.Read()
		if queueTreeOf(r.Meta()).Leaf(c.Queue) == nil {
			return nil, fmt.Errorf("queue %s is no leaf queue of the tree", c.Queue)
		}
		return nil, tx.MoveApp(c.AppID, c.Queue)
	})
	register(CmdRotateKey, func(tx *state.WriteTxn, c *rotateKeyCmd) (any, error) {
		m := tx.Read().Meta()
		m.Keys = append([]*yarnpb.MasterKey{c.Key}, m.Keys...)
		if len(m.Keys) > keysKept {
			m.Keys = m.Keys[:keysKept]
		}
		return nil, tx.PutMeta(m)
	})
}

// forgetResult names what a forget command forgot, and when.
type forgetResult struct {
	IDs []string
	Now int64
}

func forgetEach(c *forgetCmd, del func(string) (bool, error)) (any, error) {
	res := forgetResult{Now: c.Now}
	for _, id := range c.IDs {
		ok, err := del(id)
		if err != nil {
			return nil, err
		}
		if ok {
			res.IDs = append(res.IDs, id)
		}
	}
	return res, nil
}

// encodeCommand frames a command for the raft log: its type byte, then
// its JSON payload.
func encodeCommand(t CommandType, payload any) ([]byte, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encoding command %d: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// fsmResult is what Apply returns to the raft future.
type fsmResult struct {
	Value any
	Err   error
}

// FSM applies raft log entries to the state store.
type FSM struct {
	logger hclog.Logger
	mu     sync.RWMutex
	store  *state.Store
	// applied is called after every applied entry, on the FSM goroutine;
	// the leader uses it to wake the scheduler.
	applied func(t CommandType)
	// index is the raft index of the last command this FSM applied.
	index atomic.Uint64
	// panics counts commands whose apply panicked and was refused.
	panics atomic.Int64
	// forgotten are the applications retention forgot lately.
	forgotten forgotten
}

// NewFSM returns an FSM over an empty store.
func NewFSM(logger hclog.Logger) (*FSM, error) {
	st, err := state.NewStore()
	if err != nil {
		return nil, err
	}
	return &FSM{logger: logger.Named("fsm"), store: st}, nil
}

// State returns the current store.
func (f *FSM) State() *state.Store {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.store
}

// Apply implements raft.FSM. An entry it cannot apply (a command type it
// does not know, a payload that does not decode, or one that would break
// the state's invariants) is refused with a logged error and changes
// nothing: raft has already committed it, so refusing it is the only
// answer that keeps every replica, and every restart, able to go on.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		f.index.Store(l.Index)
		return nil
	}
	t := CommandType(l.Data[0])
	fn, ok := commands[t]
	if !ok {
		err := fmt.Errorf("raft log entry %d holds unknown command type %d; it was skipped (a newer ResourceManager may have written it: upgrade this one)", l.Index, t)
		f.logger.Error("skipping raft log entry", "index", l.Index, "type", t, "error", err)
		f.index.Store(l.Index)
		return &fsmResult{Err: err}
	}
	var value any
	err := f.State().Write(l.Index, func(tx *state.WriteTxn) (err error) {
		defer func() {
			if p := recover(); p != nil {
				f.panics.Add(1)
				err = fmt.Errorf("command %d at index %d could not be applied: %v", t, l.Index, p)
			}
		}()
		v, err := fn(tx, l.Data[1:])
		value = v
		return err
	})
	if err != nil {
		f.logger.Debug("command refused", "type", t, "index", l.Index, "error", err)
	}
	if res, ok := value.(forgetResult); ok && err == nil && t == CmdForgetApps {
		f.forgotten.add(res.IDs, res.Now)
	}
	f.index.Store(l.Index)
	if f.applied != nil {
		f.applied(t)
	}
	return &fsmResult{Value: value, Err: err}
}

// AppliedIndex is the raft index of the last command applied to the store.
// raft's own AppliedIndex runs ahead of it: raft counts an entry applied
// once it is handed to the FSM goroutine.
func (f *FSM) AppliedIndex() uint64 { return f.index.Load() }

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{dump: f.State().Snapshot().Dump()}, nil
}

// Restore implements raft.FSM: it builds a new store and swaps it in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d state.Dump
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("decoding snapshot: %w", err)
	}
	st, err := state.Restore(&d)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.store
	f.store = st
	f.mu.Unlock()
	old.Abandon()
	return nil
}

type fsmSnapshot struct{ dump *state.Dump }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.dump); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// newPlacePlan groups a plan's containers for the raft log.
func newPlacePlan(epoch, now int64, plan []*state.Container) *placePlanCmd {
	cmd := &placePlanCmd{Epoch: epoch, AllocatedAt: now}
	nodeIdx := map[string]int32{}
	type key struct {
		attempt string
		res     state.Resource
		prio    int32
		arid    int64
		am      bool
	}
	groups := map[key]int{}
	for _, c := range plan {
		ni, ok := nodeIdx[c.NodeID]
		if !ok {
			ni = int32(len(cmd.Nodes))
			nodeIdx[c.NodeID] = ni
			cmd.Nodes = append(cmd.Nodes, c.NodeID)
		}
		k := key{c.AttemptID, c.Resource, c.Priority, c.AllocationRequestID, c.IsAM}
		gi, ok := groups[k]
		if !ok {
			gi = len(cmd.Groups)
			groups[k] = gi
			cmd.Groups = append(cmd.Groups, placement{AttemptID: c.AttemptID, Resource: c.Resource, Priority: c.Priority, AllocationRequestID: c.AllocationRequestID, IsAM: c.IsAM})
		}
		g := &cmd.Groups[gi]
		g.Seqs = append(g.Seqs, yarnpb.ContainerSeq(c.ID))
		g.NodeIdx = append(g.NodeIdx, ni)
	}
	return cmd
}

// containers expands the plan; container ids follow from the epoch, the
// attempt and the sequence numbers the scheduler chose.
func (c *placePlanCmd) containers() ([]*state.Container, error) {
	var out []*state.Container
	for _, g := range c.Groups {
		appID, err := yarnpb.AppIDOfAttempt(g.AttemptID)
		if err != nil {
			return nil, err
		}
		num := int32(yarnpb.ContainerSeq(g.AttemptID))
		if len(g.Seqs) != len(g.NodeIdx) {
			return nil, fmt.Errorf("placement group of %s has %d sequence numbers and %d nodes", g.AttemptID, len(g.Seqs), len(g.NodeIdx))
		}
		for i, seq := range g.Seqs {
			ni := g.NodeIdx[i]
			if ni < 0 || int(ni) >= len(c.Nodes) {
				return nil, fmt.Errorf("placement names node %d of %d", ni, len(c.Nodes))
			}
			out = append(out, &state.Container{
				ID:                  yarnpb.ContainerID(c.Epoch, appID, num, seq),
				AppID:               appID,
				AttemptID:           g.AttemptID,
				NodeID:              c.Nodes[ni],
				Resource:            g.Resource,
				Priority:            g.Priority,
				AllocationRequestID: g.AllocationRequestID,
				IsAM:                g.IsAM,
				AllocatedAt:         c.AllocatedAt,
			})
		}
	}
	return out, nil
}
