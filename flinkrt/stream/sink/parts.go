package sink

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"loom/flinkrt/codec"
	"loom/flinkrt/state"
)

// partFiles is the exactly-once text sink of one subtask: records go to
// an in-progress part file; a checkpoint closes it as pending; the
// checkpoint's completion renames it to its final name.
type partFiles[T any] struct {
	dir     string
	subtask int
	st      partState
	cur     *os.File
	w       lineWriter[T]
}

// partState is what a checkpoint records of a subtask's part files.
type partState struct {
	// Next is the sequence number of the next part file.
	Next int64
	// Pending are the part files closed for checkpoints not yet known to
	// be complete: pairs of checkpoint id and sequence number.
	Pending [][2]int64
}

func (p *partFiles[T]) name(seq int64) string {
	return filepath.Join(p.dir, fmt.Sprintf("part-%d-%d", p.subtask, seq))
}
func (p *partFiles[T]) inProgress(seq int64) string {
	return filepath.Join(p.dir, fmt.Sprintf(".part-%d-%d.inprogress", p.subtask, seq))
}
func (p *partFiles[T]) pending(seq int64) string {
	return filepath.Join(p.dir, fmt.Sprintf(".part-%d-%d.pending", p.subtask, seq))
}

// openPartFiles starts a subtask's part files: from the state a
// checkpoint restored (committing what it left pending, discarding what
// was written after it) or afresh (discarding the subtask's earlier
// output).
func openPartFiles[T any](dir string, subtask int, restored []byte) (*partFiles[T], error) {
	p := &partFiles[T]{dir: dir, subtask: subtask}
	if restored != nil {
		st, _, err := codec.MustFor[partState]().Decode(restored)
		if err != nil {
			return nil, fmt.Errorf("text sink: the restored state is corrupt: %w", err)
		}
		p.st = st
	}
	keep := map[int64]bool{}
	for _, pd := range p.st.Pending {
		if err := os.Rename(p.pending(pd[1]), p.name(pd[1])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("text sink: committing %s: %w", p.pending(pd[1]), err)
		}
		keep[pd[1]] = true
	}
	p.st.Pending = nil
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("text sink: %w", err)
	}
	for _, e := range entries {
		seq, final, ok := p.parse(e.Name())
		if !ok || final && (seq < p.st.Next || keep[seq]) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("text sink: discarding %s: %w", e.Name(), err)
		}
	}
	return p, nil
}

// parse recognises the subtask's part files: final ones, and hidden
// in-progress and pending ones.
func (p *partFiles[T]) parse(name string) (seq int64, final, ok bool) {
	prefix := fmt.Sprintf("part-%d-", p.subtask)
	rest, hidden := strings.CutPrefix(name, "."+prefix)
	if hidden {
		rest, ok = strings.CutSuffix(rest, ".inprogress")
		if !ok {
			rest, ok = strings.CutSuffix(rest, ".pending")
		}
		if !ok {
			return 0, false, false
		}
	} else if rest, ok = strings.CutPrefix(name, prefix); !ok {
		return 0, false, false
	}
	seq, err := strconv.ParseInt(rest, 10, 64)
	return seq, !hidden, err == nil
}

func (p *partFiles[T]) Write(v T) error {
	if p.cur == nil {
		f, err := os.Create(p.inProgress(p.st.Next))
		if err != nil {
			return err
		}
		p.cur = f
		p.w = lineWriter[T]{out: f}
	}
	return p.w.Write(v)
}

// Flush writes what is buffered to the in-progress file; it stays hidden.
func (p *partFiles[T]) Flush() error {
	if p.cur == nil {
		return nil
	}
	return p.w.Flush()
}

// PreCommit implements Transactional.
func (p *partFiles[T]) PreCommit(checkpointID int64) ([]byte, error) {
	if p.cur != nil {
		// A pending file is on disk, under its pending name, before the
		// checkpoint that will commit it can complete.
		err := p.w.Flush()
		if err == nil {
			err = p.cur.Sync()
		}
		if cerr := p.cur.Close(); err == nil {
			err = cerr
		}
		p.cur = nil
		if err != nil {
			return nil, err
		}
		seq := p.st.Next
		if err := os.Rename(p.inProgress(seq), p.pending(seq)); err != nil {
			return nil, err
		}
		if err := state.SyncDir(p.dir); err != nil {
			return nil, err
		}
		p.st.Pending = append(p.st.Pending, [2]int64{checkpointID, seq})
		p.st.Next++
	}
	return codec.MustFor[partState]().Append(nil, p.st), nil
}

// Commit implements Transactional.
func (p *partFiles[T]) Commit(checkpointID int64) error {
	kept := p.st.Pending[:0]
	for _, pd := range p.st.Pending {
		if pd[0] > checkpointID {
			kept = append(kept, pd)
			continue
		}
		if err := os.Rename(p.pending(pd[1]), p.name(pd[1])); err != nil {
			return err
		}
	}
	p.st.Pending = kept
	return nil
}

// EndInput commits everything: the input ended, so no checkpoint will
// cover what remains.
func (p *partFiles[T]) EndInput() error {
	if _, err := p.PreCommit(math.MaxInt64); err != nil {
		return err
	}
	return p.Commit(math.MaxInt64)
}

func (p *partFiles[T]) Close() error {
	if p.cur == nil {
		return nil
	}
	err := p.w.Flush()
	if cerr := p.cur.Close(); err == nil {
		err = cerr
	}
	p.cur = nil
	return err
}
