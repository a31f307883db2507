package source

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/loom-project/loom/flinkrt/stream/internal/jobpath"
)

// TextFile emits the lines of a file, or of every file under a directory
// (hidden files and those starting with "_" skipped, as Flink does),
// without their line endings. The input is cut into one byte range per
// subtask; a line belongs to the range it starts in. A relative path is
// taken from the directory `loom run` was started in (or the program's,
// run directly).
func TextFile(path string) Source[string] { return textFile{jobpath.Resolve(path)} }

type textFile struct{ path string }

func (t textFile) Describe() string    { return "TextFile" }
func (t textFile) MaxParallelism() int { return 0 }

type fileSpan struct {
	path string
	size int64
}

func listFiles(path string) ([]fileSpan, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("text source: %w", err)
	}
	if !info.IsDir() {
		return []fileSpan{{path, info.Size()}}, nil
	}
	var files []fileSpan
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != path && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, fileSpan{p, fi.Size()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("text source: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, nil
}

// Run reads the subtask's byte range, or the spans a restore gave it. A
// checkpoint records what is left: from the offset, over all the files,
// of the line being emitted, where a restored subtask resumes; the files
// must not change in between.
func (t textFile) Run(ctx Context[string]) error {
	files, err := listFiles(t.path)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	p, s := ctx.Parallelism(), ctx.Subtask()
	lo, hi := share(total, s, p), share(total, s+1, p)
	spans, err := restoredSpans(ctx.Restored(), span{Start: lo, End: hi}, total)
	if err != nil {
		return fmt.Errorf("text source %s: %w", t.path, err)
	}
	at := &position{}
	k := 0
	ctx.Checkpointed(func() []byte { return leftFrom(spans, k, at.base+at.line) })
	for ; k < len(spans); k++ {
		sp := spans[k]
		at.base = 0
		for _, f := range files {
			start, end := max(sp.Start-at.base, 0), min(sp.End-at.base, f.size)
			if start < end {
				// A span that starts at a line's start reads from there;
				// any other starts inside the line before it unless at
				// the file's start.
				if err := readRange(ctx, f.path, start, end, sp.Aligned && start > 0, at); err != nil {
					return err
				}
			}
			at.base += f.size
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// restoredSpans are the spans a subtask reads: fresh, its own; else those
// its restored position names, which must lie in the input (of size
// total). A position of one offset, from before sources could split,
// resumes the fresh span there.
func restoredSpans(b []byte, fresh span, total int64) ([]span, error) {
	if b == nil {
		return []span{fresh}, nil
	}
	spans, v, legacy, err := decodePosition(b)
	if err != nil {
		return nil, err
	}
	if legacy {
		if v < fresh.Start || v > fresh.End {
			return nil, errors.New("the restored position is not in this subtask's range; did the input change?")
		}
		return []span{{Start: v, End: fresh.End, Aligned: true}}, nil
	}
	for _, s := range spans {
		if s.End > total {
			return nil, errors.New("the restored position is past the end of the input; did the input change?")
		}
	}
	return spans, nil
}

// leftFrom is the position of a source reading spans[k] at pos: the rest
// of that span, from a record's start, and the spans after it.
func leftFrom(spans []span, k int, pos int64) []byte {
	if k >= len(spans) {
		return encodeSpans(nil)
	}
	left := append([]span{{Start: pos, End: spans[k].End, Aligned: true}}, spans[k+1:]...)
	return encodeSpans(left)
}

// Split implements Splittable.
func (t textFile) Split(positions [][]byte, subtask, parallelism int) ([]byte, error) {
	b, err := splitSpans(positions, subtask, parallelism)
	if err != nil {
		return nil, fmt.Errorf("text source %s: %w", t.path, err)
	}
	return b, nil
}

// position is where a text source is: the offset of the file being read
// over all files, and that of the line being emitted in it.
type position struct{ base, line int64 }

// readRange emits the lines that start in [start, end) of a file; with
// aligned, a line starts at start.
func readRange(ctx Context[string], path string, start, end int64, aligned bool, at *position) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("text source: %w", err)
	}
	defer f.Close()
	pos := start
	if aligned {
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return fmt.Errorf("text source: %w", err)
		}
	}
	if start > 0 && !aligned {
		// A line that starts before start belongs to the range before: skip
		// to the first line start at or after start.
		if _, err := f.Seek(start-1, io.SeekStart); err != nil {
			return fmt.Errorf("text source: %w", err)
		}
		pos = start - 1
	}
	r := bufio.NewReaderSize(f, 256<<10)
	if start > 0 && !aligned {
		skipped, err := r.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			pos += int64(len(skipped))
			skipped, err = r.ReadSlice('\n')
		}
		pos += int64(len(skipped))
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("text source %s: %w", path, err)
		}
	}
	n := 0
	for pos < end {
		line, err := r.ReadSlice('\n')
		var long []byte
		for errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			line, err = r.ReadSlice('\n')
		}
		if long != nil {
			line = append(long, line...)
		}
		at.line = pos
		pos += int64(len(line))
		if len(line) > 0 {
			ctx.Collect(trimEOL(line))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("text source %s: %w", path, err)
		}
		if n++; n&1023 == 0 && ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

func trimEOL(line []byte) string {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	return string(line)
}

// Socket emits the lines read from a TCP server at addr until it closes
// the connection, as Flink's socketTextStream; one subtask.
func Socket(addr string) Source[string] { return socket{addr} }

type socket struct{ addr string }

func (s socket) Describe() string    { return "Socket" }
func (s socket) MaxParallelism() int { return 1 }

func (s socket) Run(ctx Context[string]) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("socket source: %w", err)
	}
	defer conn.Close()
	lines := make(chan string, 1024)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(conn, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if len(line) > 0 {
				select {
				case lines <- trimEOL([]byte(line)):
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					readErr <- fmt.Errorf("socket source %s: %w", s.addr, err)
				}
				return
			}
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				select {
				case err := <-readErr:
					if ctx.Err() == nil {
						return err
					}
				default:
				}
				return nil
			}
			ctx.Collect(line)
		case <-ctx.Idle():
			ctx.Yield()
		case <-ctx.Done():
			// Closing the connection ends the reader.
			return nil
		}
	}
}
