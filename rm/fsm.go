package rm

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"loom/proto/yarnpb"
	"loom/rm/state"
)

// CommandType numbers the raft commands. Append only: the numbers are in
// every raft log on disk.
type CommandType uint8

const (
	CmdBumpEpoch CommandType = iota + 1
	CmdRegisterNode
	CmdSetNodeState
	CmdSubmitApp
	CmdPlaceContainers
	CmdAcquireContainers
	CmdContainerStatuses
	CmdRegisterAttempt
	CmdUnregisterAttempt
	CmdFailAttempt
	CmdKillApp
	CmdReleaseContainers
	CmdAppProgress
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
	placeContainersCmd struct {
		Containers []*state.Container `json:"containers"`
	}
	acquireContainersCmd struct {
		IDs []string `json:"ids"`
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
)

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
		return fn(tx, cmd)
	}
}

func init() {
	register(CmdBumpEpoch, func(tx *state.WriteTxn, c *bumpEpochCmd) (any, error) {
		m := tx.Read().Meta()
		m.Epoch++
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
		return nil, tx.SubmitApp(c.App, c.Now)
	})
	register(CmdPlaceContainers, func(tx *state.WriteTxn, c *placeContainersCmd) (any, error) {
		return tx.PlaceContainers(c.Containers)
	})
	register(CmdAcquireContainers, func(tx *state.WriteTxn, c *acquireContainersCmd) (any, error) {
		return nil, tx.AcquireContainers(c.IDs)
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

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	t := CommandType(l.Data[0])
	fn, ok := commands[t]
	if !ok {
		// A newer RM wrote a command this one does not know: refusing to go
		// on is the only safe answer.
		panic(fmt.Sprintf("rm: raft log entry %d holds unknown command type %d; upgrade this ResourceManager", l.Index, t))
	}
	var value any
	err := f.State().Write(l.Index, func(tx *state.WriteTxn) error {
		v, err := fn(tx, l.Data[1:])
		value = v
		return err
	})
	if err != nil {
		f.logger.Debug("command refused", "type", t, "index", l.Index, "error", err)
	}
	if f.applied != nil {
		f.applied(t)
	}
	return &fsmResult{Value: value, Err: err}
}

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
