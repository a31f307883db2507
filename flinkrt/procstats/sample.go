package procstats

import (
	"bufio"
	"bytes"
	"context"
	"maps"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// Bounds on a sample of stacks.
const (
	MaxSamples     = 1000
	MaxDepth       = 512
	maxStacks      = 10_000
	maxFrameLength = 512
)

// The pprof labels a worker gives each task's goroutine, which a sample
// of a vertex's stacks selects by.
const (
	LabelJob     = "loom_job"
	LabelVertex  = "loom_vertex"
	LabelSubtask = "loom_subtask"
)

// keep says whether a goroutine of these labels is sampled.
type keep func(labels map[string]string) bool

// SampleTasks samples, n times delay apart, the stacks of the goroutines
// of a job's vertex (those of the listed subtasks, or all), merged by
// stack: what Flink's flame graphs are built from. It stops early when
// ctx ends.
func SampleTasks(ctx context.Context, job string, vertex int, subtasks []int32, n int, delay time.Duration, depth int) *flinkpb.SampleTasksResponse {
	want := map[string]bool{}
	for _, s := range subtasks {
		want[strconv.Itoa(int(s))] = true
	}
	v := strconv.Itoa(vertex)
	return sample(ctx, func(l map[string]string) bool {
		return l[LabelJob] == job && l[LabelVertex] == v && (len(want) == 0 || want[l[LabelSubtask]])
	}, n, delay, depth)
}

func sample(ctx context.Context, keep keep, n int, delay time.Duration, depth int) *flinkpb.SampleTasksResponse {
	n, depth = min(max(n, 1), MaxSamples), min(max(depth, 1), MaxDepth)
	stacks := map[string]*flinkpb.StackSample{}
	symbols := map[string][]string{} // PCs as the profile prints them → frames
	var buf bytes.Buffer
	resp := &flinkpb.SampleTasksResponse{}
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return finish(resp, stacks)
			case <-time.After(delay):
			}
		}
		buf.Reset()
		if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
			break
		}
		resp.Samples++
		for _, r := range parseProfile(buf.Bytes()) {
			if !keep(r.labels) {
				continue
			}
			frames, ok := symbols[r.pcs]
			if !ok {
				frames = symbolize(r.pcs, depth)
				symbols[r.pcs] = frames
			}
			if len(frames) == 0 {
				continue
			}
			parked := strings.HasPrefix(frames[len(frames)-1], "runtime.gopark")
			key := r.pcs
			if s, ok := stacks[key]; ok {
				s.Count += r.count
			} else if len(stacks) < maxStacks {
				stacks[key] = &flinkpb.StackSample{Frames: frames, Count: r.count, Parked: parked}
			}
		}
	}
	return finish(resp, stacks)
}

func finish(resp *flinkpb.SampleTasksResponse, stacks map[string]*flinkpb.StackSample) *flinkpb.SampleTasksResponse {
	for _, k := range slices.Sorted(maps.Keys(stacks)) {
		resp.Stacks = append(resp.Stacks, stacks[k])
	}
	return resp
}

// record is one stack of a goroutine profile at debug level 1: how many
// goroutines have it, its PCs as printed, and their labels.
type record struct {
	count  int64
	pcs    string
	labels map[string]string
}

var labelRe = regexp.MustCompile(`"((?:[^"\\]|\\.)*)":"((?:[^"\\]|\\.)*)"`)

// parseProfile reads the records of a goroutine profile written at debug
// level 1: "N @ 0x... 0x...", then "# labels: {...}" when the goroutines
// have labels, then the frames.
func parseProfile(b []byte) []record {
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	header := false // the line before was a record's first
	for sc.Scan() {
		line := sc.Text()
		wasHeader := header
		header = false
		if count, pcs, ok := strings.Cut(line, " @ "); ok && !strings.HasPrefix(line, "#") {
			n, err := strconv.ParseInt(count, 10, 64)
			if err != nil {
				continue
			}
			out = append(out, record{count: n, pcs: pcs})
			header = true
			continue
		}
		if l, ok := strings.CutPrefix(line, "# labels: "); ok && wasHeader {
			labels := map[string]string{}
			for _, m := range labelRe.FindAllStringSubmatch(l, -1) {
				labels[m[1]] = m[2]
			}
			out[len(out)-1].labels = labels
		}
	}
	return out
}

// symbolize turns the PCs of a record into frames, outermost first, as
// "function:line", keeping the depth innermost ones.
func symbolize(pcs string, depth int) []string {
	var addrs []uintptr
	for _, f := range strings.Fields(pcs) {
		v, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 64)
		if err != nil {
			return nil
		}
		addrs = append(addrs, uintptr(v))
	}
	var frames []string
	it := runtime.CallersFrames(addrs)
	for len(frames) < depth {
		f, more := it.Next()
		name := f.Function
		if name == "" {
			name = "?"
		}
		if len(name) > maxFrameLength {
			name = name[:maxFrameLength]
		}
		frames = append(frames, name+":"+strconv.Itoa(f.Line))
		if !more {
			break
		}
	}
	slices.Reverse(frames)
	return frames
}
