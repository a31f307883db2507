package source

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Splittable is a Source whose position is the input it has left, in
// splits any subtask can read: restored at another parallelism, every new
// subtask is given the positions of all the old subtasks and takes an
// even share of what remains, so no input is read twice or lost.
type Splittable interface {
	// Split is subtask's position at parallelism from the old
	// subtasks' positions.
	Split(positions [][]byte, subtask, parallelism int) ([]byte, error)
}

// span is input a source has left: the bytes [Start, End) of its files
// (the lines that start there), or the indexes of a generator. Aligned
// says a line starts at Start.
type span struct {
	Start, End int64
	Aligned    bool
}

// maxSpans bounds the spans of a restored position.
const maxSpans = 1 << 16

// spansMagic starts a position of spans; a position of one index (a
// varint) is that of a source before it could split.
const spansMagic = "\xffLS\x01"

func encodeSpans(spans []span) []byte {
	b := []byte(spansMagic)
	b = binary.AppendUvarint(b, uint64(len(spans)))
	for _, s := range spans {
		b = binary.AppendVarint(b, s.Start)
		b = binary.AppendVarint(b, s.End)
		aligned := byte(0)
		if s.Aligned {
			aligned = 1
		}
		b = append(b, aligned)
	}
	return b
}

var errCorrupt = errors.New("the restored position is corrupt")

// decodePosition reads a restored position: its spans, or the one index
// of the position of a source before it could split (legacy true).
func decodePosition(b []byte) (spans []span, index int64, legacy bool, err error) {
	if v, n := binary.Varint(b); n == len(b) && n > 0 {
		return nil, v, true, nil
	}
	if len(b) < len(spansMagic) || string(b[:len(spansMagic)]) != spansMagic {
		return nil, 0, false, errCorrupt
	}
	b = b[len(spansMagic):]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > maxSpans {
		return nil, 0, false, errCorrupt
	}
	b = b[n:]
	spans = make([]span, 0, count)
	for range count {
		var s span
		var n1, n2 int
		s.Start, n1 = binary.Varint(b)
		if n1 <= 0 {
			return nil, 0, false, errCorrupt
		}
		s.End, n2 = binary.Varint(b[n1:])
		if n2 <= 0 || len(b) < n1+n2+1 || s.Start < 0 || s.End < s.Start {
			return nil, 0, false, errCorrupt
		}
		s.Aligned = b[n1+n2] == 1
		b = b[n1+n2+1:]
		spans = append(spans, s)
	}
	if len(b) != 0 {
		return nil, 0, false, errCorrupt
	}
	return spans, 0, false, nil
}

// splitSpans is subtask's share of what every old subtask had left: the
// spans laid end to end, cut into parallelism parts of even length. A span
// cut in two leaves its second part unaligned: the line that crosses the
// cut belongs to the first.
func splitSpans(positions [][]byte, subtask, parallelism int) ([]byte, error) {
	if parallelism < 1 || subtask < 0 || subtask >= parallelism {
		return nil, fmt.Errorf("subtask %d of %d", subtask, parallelism)
	}
	var all []span
	var total int64
	for i, b := range positions {
		spans, _, legacy, err := decodePosition(b)
		if err != nil {
			return nil, fmt.Errorf("the position of subtask %d: %w", i, err)
		}
		if legacy {
			return nil, fmt.Errorf("the position of subtask %d was recorded by a version of loom whose sources could not change parallelism; restore it at its parallelism (%d) and take a new savepoint", i, len(positions))
		}
		for _, s := range spans {
			if s.End > s.Start {
				all = append(all, s)
				total += s.End - s.Start
			}
		}
		if len(all) > maxSpans {
			return nil, errCorrupt
		}
	}
	lo, hi := share(total, subtask, parallelism), share(total, subtask+1, parallelism)
	var mine []span
	var at int64 // where the span starts in the spans laid end to end
	for _, s := range all {
		n := s.End - s.Start
		from, to := max(lo-at, 0), min(hi-at, n)
		if from < to {
			mine = append(mine, span{Start: s.Start + from, End: s.Start + to, Aligned: s.Aligned && from == 0})
		}
		at += n
	}
	return encodeSpans(mine), nil
}

// share is where subtask's share of total starts, of parallelism even
// shares; without overflow for any total.
func share(total int64, subtask, parallelism int) int64 {
	q, r := total/int64(parallelism), total%int64(parallelism)
	return q*int64(subtask) + r*int64(subtask)/int64(parallelism)
}
