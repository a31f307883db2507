package stream

import (
	"fmt"
	"math"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/task"
)

// windowSnapshot is a window operator's state in a checkpoint: its
// windows' accumulators and trigger states, its session windows and its
// timers.
type windowSnapshot[K comparable, T, A any] struct {
	Windows  []windowEntry[K, T, A]
	Sessions map[K][]TimeWindow
	Event    []timerEntry[K]
	Proc     []timerEntry[K]
	// Watermark is the operator's event time.
	Watermark int64
	// WindowState and GlobalState are a process window function's
	// per-window and global state (state.Backend snapshots).
	WindowState, GlobalState []byte
}

type windowEntry[K comparable, T, A any] struct {
	Key K
	Win TimeWindow
	Acc A
	// Trigger state: TrigKind 0 none, 1 an int64 (count triggers), 2 a
	// record (delta triggers).
	TrigKind uint8
	TrigInt  int64
	TrigVal  T
}

type timerEntry[K comparable] struct {
	Ts  int64
	Key K
	Win TimeWindow
}

// SnapshotState implements task.Snapshotter.
func (o *windowOp[K, T, A, O]) SnapshotState(int64) ([]byte, error) {
	c, err := codec.For[windowSnapshot[K, T, A]]()
	if err != nil {
		return nil, err
	}
	s := windowSnapshot[K, T, A]{Sessions: o.sessions, Watermark: o.timers.watermark}
	if s.WindowState, err = o.perWindow.Snapshot(); err != nil {
		return nil, err
	}
	if s.GlobalState, err = o.global.Snapshot(); err != nil {
		return nil, err
	}
	for wk, st := range o.windows {
		e := windowEntry[K, T, A]{Key: wk.key, Win: wk.w, Acc: st.acc}
		switch v := st.trig.(type) {
		case nil:
		case int64:
			e.TrigKind, e.TrigInt = 1, v
		case T:
			e.TrigKind, e.TrigVal = 2, v
		default:
			return nil, fmt.Errorf("the window trigger keeps state of type %T, which checkpoints cannot hold: keep an int64 or a record", v)
		}
		s.Windows = append(s.Windows, e)
	}
	for t := range o.timers.event.set {
		s.Event = append(s.Event, timerEntry[K]{t.ts, t.key, t.ns})
	}
	for t := range o.timers.proc.set {
		s.Proc = append(s.Proc, timerEntry[K]{t.ts, t.key, t.ns})
	}
	return c.Append(nil, s), nil
}

// RestoreState implements task.Snapshotter; Open applies the state, once
// the operator's timers exist.
func (o *windowOp[K, T, A, O]) RestoreState(b []byte) error {
	c, err := codec.For[windowSnapshot[K, T, A]]()
	if err != nil {
		return err
	}
	s, _, err := c.Decode(b)
	if err != nil {
		return err
	}
	if s.WindowState != nil {
		if err := o.perWindow.Restore(s.WindowState); err != nil {
			return err
		}
	}
	if s.GlobalState != nil {
		if err := o.global.Restore(s.GlobalState); err != nil {
			return err
		}
	}
	o.restored = &s
	return nil
}

// appendOwned appends the timers of the keys owns says to dst.
func appendOwned[K comparable](dst, timers []timerEntry[K], owns func(K) bool) []timerEntry[K] {
	for _, t := range timers {
		if owns(t.Key) {
			dst = append(dst, t)
		}
	}
	return dst
}

// RestoreKeyed implements task.KeyedRestorer: the windows, sessions and
// timers of the keys this subtask owns, from every subtask's checkpoint.
// The watermark is the least of theirs.
func (o *windowOp[K, T, A, O]) RestoreKeyed(states [][]byte, g task.KeyGroups) error {
	owns, err := ownedKeys[K](g)
	if err != nil {
		return err
	}
	c, err := codec.For[windowSnapshot[K, T, A]]()
	if err != nil {
		return err
	}
	merged := windowSnapshot[K, T, A]{Sessions: map[K][]TimeWindow{}, Watermark: math.MaxInt64}
	var perWindow, global [][]byte
	for _, b := range states {
		s, _, err := c.Decode(b)
		if err != nil {
			return err
		}
		if s.WindowState != nil {
			perWindow = append(perWindow, s.WindowState)
		}
		if s.GlobalState != nil {
			global = append(global, s.GlobalState)
		}
		merged.Watermark = min(merged.Watermark, s.Watermark)
		for _, e := range s.Windows {
			if owns(e.Key) {
				merged.Windows = append(merged.Windows, e)
			}
		}
		for k, ws := range s.Sessions {
			if owns(k) {
				merged.Sessions[k] = ws
			}
		}
		merged.Event = appendOwned(merged.Event, s.Event, owns)
		merged.Proc = appendOwned(merged.Proc, s.Proc, owns)
	}
	if len(states) == 0 {
		merged.Watermark = math.MinInt64
	}
	if err := o.perWindow.RestoreKeyed(perWindow, func(kw KeyedWindow[K]) bool { return owns(kw.Key) }); err != nil {
		return err
	}
	if err := o.global.RestoreKeyed(global, owns); err != nil {
		return err
	}
	o.restored = &merged
	return nil
}

// applyRestored puts restored state in place.
func (o *windowOp[K, T, A, O]) applyRestored() {
	s := o.restored
	if s == nil {
		return
	}
	o.restored = nil
	for _, e := range s.Windows {
		st := &windowState[A]{acc: e.Acc}
		switch e.TrigKind {
		case 1:
			st.trig = e.TrigInt
		case 2:
			st.trig = e.TrigVal
		}
		o.windows[windowKey[K]{e.Key, e.Win}] = st
	}
	if s.Sessions != nil {
		o.sessions = s.Sessions
	}
	o.timers.watermark = s.Watermark
	for _, t := range s.Event {
		o.timers.registerEvent(t.Ts, t.Key, t.Win)
	}
	for _, t := range s.Proc {
		o.timers.registerProc(t.Ts, t.Key, t.Win)
	}
}
