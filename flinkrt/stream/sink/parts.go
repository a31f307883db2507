package sink

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/state"
)

// partFiles is the exactly-once text sink of one subtask: records go to
// an in-progress part file; a checkpoint closes it as pending; the
// checkpoint's completion renames it to its final name.
type partFiles[T any] struct {
	dir     string
	subtask int
	st      partState
	// retired are the part files of subtasks of an earlier parallelism
	// this one took over, kept in every checkpoint so a later restore
	// knows which of their files are output.
	retired []retiredParts
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

// partsState is a checkpoint's state of a subtask: its own part files'
// and those of the subtasks it took over when the sink's parallelism
// changed, whose part files keep their names.
type partsState struct {
	Subtask int64
	Own     partState
	Retired []retiredParts
}

type retiredParts struct {
	Subtask int64
	State   partState
}

// partsMagic starts a partsState; a state without it is a partState, as
// a sink recorded it before it could change parallelism.
const partsMagic = "\xffPS\x01"

// maxRetired bounds the subtasks a restored state takes over.
const maxRetired = 1 << 15

func encodeParts(s partsState) []byte {
	return codec.MustFor[partsState]().Append([]byte(partsMagic), s)
}

// decodeParts reads a restored state; legacy is the subtask a partState
// of an earlier version is taken to be of.
func decodeParts(b []byte, legacy int) (partsState, error) {
	if rest, ok := strings.CutPrefix(string(b), partsMagic); ok {
		st, n, err := codec.MustFor[partsState]().Decode([]byte(rest))
		switch {
		case err != nil:
			return partsState{}, fmt.Errorf("text sink: the restored state is corrupt: %w", err)
		case n != len(rest) || len(st.Retired) > maxRetired || st.Subtask < 0:
			return partsState{}, errors.New("text sink: the restored state is corrupt")
		}
		for _, r := range st.Retired {
			if r.Subtask < 0 || r.Subtask == st.Subtask {
				return partsState{}, errors.New("text sink: the restored state is corrupt")
			}
		}
		return st, nil
	}
	st, _, err := codec.MustFor[partState]().Decode(b)
	if err != nil {
		return partsState{}, fmt.Errorf("text sink: the restored state is corrupt: %w", err)
	}
	return partsState{Subtask: int64(legacy), Own: st}, nil
}

// splitParts is subtask's state at parallelism from every old subtask's:
// the part files of each old subtask (and of those it had taken over) go
// to the subtask of its index modulo the new parallelism, which commits
// what they left pending and keeps their finished files.
func splitParts(states [][]byte, subtask, parallelism int) ([]byte, error) {
	if parallelism < 1 || subtask < 0 || subtask >= parallelism {
		return nil, fmt.Errorf("text sink: subtask %d of %d", subtask, parallelism)
	}
	all := map[int64]partState{}
	add := func(id int64, st partState) error {
		if _, dup := all[id]; dup || len(all) >= maxRetired {
			return fmt.Errorf("text sink: the restored states name the part files of subtask %d twice, or too many subtasks", id)
		}
		all[id] = st
		return nil
	}
	for i, b := range states {
		st, err := decodeParts(b, i)
		if err != nil {
			return nil, err
		}
		if err := add(st.Subtask, st.Own); err != nil {
			return nil, err
		}
		for _, r := range st.Retired {
			if err := add(r.Subtask, r.State); err != nil {
				return nil, err
			}
		}
	}
	out := partsState{Subtask: int64(subtask), Own: all[int64(subtask)]}
	for _, id := range slices.Sorted(maps.Keys(all)) {
		if id%int64(parallelism) == int64(subtask) && id != int64(subtask) {
			out.Retired = append(out.Retired, retiredParts{id, all[id]})
		}
	}
	return encodeParts(out), nil
}

func partName(dir string, subtask int, seq int64) string {
	return filepath.Join(dir, fmt.Sprintf("part-%d-%d", subtask, seq))
}

func (p *partFiles[T]) name(seq int64) string { return partName(p.dir, p.subtask, seq) }
func (p *partFiles[T]) inProgress(seq int64) string {
	return filepath.Join(p.dir, fmt.Sprintf(".part-%d-%d.inprogress", p.subtask, seq))
}
func (p *partFiles[T]) pending(seq int64) string { return pendingName(p.dir, p.subtask, seq) }

func pendingName(dir string, subtask int, seq int64) string {
	return filepath.Join(dir, fmt.Sprintf(".part-%d-%d.pending", subtask, seq))
}

// openPartFiles starts a subtask's part files: from the state a
// checkpoint restored (committing what it left pending, discarding what
// was written after it, for its own part files and those it took over)
// or afresh (discarding the subtask's earlier output).
func openPartFiles[T any](dir string, subtask int, restored []byte) (*partFiles[T], error) {
	p := &partFiles[T]{dir: dir, subtask: subtask}
	if restored != nil {
		st, err := decodeParts(restored, subtask)
		if err != nil {
			return nil, err
		}
		if st.Subtask != int64(subtask) {
			return nil, fmt.Errorf("text sink: the restored state is subtask %d's, not %d's", st.Subtask, subtask)
		}
		p.st, p.retired = st.Own, st.Retired
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("text sink: %w", err)
	}
	if err := settle(dir, subtask, &p.st, entries); err != nil {
		return nil, err
	}
	for i := range p.retired {
		if err := settle(dir, int(p.retired[i].Subtask), &p.retired[i].State, entries); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// settle commits the part files of a subtask a restored state left
// pending and removes the rest of what it wrote after that state: its
// hidden files and any final one from Next on.
func settle(dir string, subtask int, st *partState, entries []os.DirEntry) error {
	keep := map[int64]bool{}
	for _, pd := range st.Pending {
		if err := os.Rename(pendingName(dir, subtask, pd[1]), partName(dir, subtask, pd[1])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("text sink: committing %s: %w", pendingName(dir, subtask, pd[1]), err)
		}
		keep[pd[1]] = true
	}
	st.Pending = nil
	for _, e := range entries {
		seq, final, ok := parsePart(subtask, e.Name())
		if !ok || final && (seq < st.Next || keep[seq]) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("text sink: discarding %s: %w", e.Name(), err)
		}
	}
	return nil
}

// parsePart recognises a subtask's part files: final ones, and hidden
// in-progress and pending ones.
func parsePart(subtask int, name string) (seq int64, final, ok bool) {
	prefix := fmt.Sprintf("part-%d-", subtask)
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
	return encodeParts(partsState{Subtask: int64(p.subtask), Own: p.st, Retired: p.retired}), nil
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
