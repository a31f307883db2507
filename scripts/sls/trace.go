package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// arrival is one application of a trace: when it is submitted (from the
// start), where, by whom, and the containers it runs.
type arrival struct {
	at         time.Duration
	queue      string
	user       string
	containers int
	memoryMB   int64
	vcores     int32
	run        time.Duration
}

// traceHeader is the first line of a trace file.
const traceHeader = "submit_ms,queue,user,containers,memory_mb,vcores,duration_ms"

// Bounds on a trace: one is read from a file.
const (
	maxTraceApps       = 1_000_000
	maxTraceContainers = 100_000
)

func loadTrace(c config) ([]arrival, error) {
	if c.trace != "" {
		f, err := os.Open(c.trace)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readTrace(f)
	}
	return syntheticTrace(c), nil
}

// syntheticTrace spreads c.apps applications evenly over the queues,
// arriving uniformly over c.arrival, each of users u1..u20, asking for
// c.minC to c.maxC containers that run c.minD to c.maxD.
func syntheticTrace(c config) []arrival {
	r := rand.New(rand.NewPCG(c.seed, 42))
	names, _ := syntheticQueues(c.queues)
	out := make([]arrival, c.apps)
	for i := range out {
		out[i] = arrival{
			at:         time.Duration(r.Int64N(int64(max(c.arrival, time.Millisecond)))),
			queue:      names[i%len(names)],
			user:       fmt.Sprintf("u%d", r.IntN(20)+1),
			containers: c.minC + r.IntN(max(c.maxC-c.minC, 0)+1),
			memoryMB:   c.containerMB,
			vcores:     1,
			run:        c.minD + time.Duration(r.Int64N(int64(max(c.maxD-c.minD, 0))+1)),
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

// readTrace reads a trace file: a header line, then one application a
// line.
func readTrace(r io.Reader) ([]arrival, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 7
	cr.ReuseRecord = true
	var out []arrival
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		if line == 1 {
			if strings.Join(rec, ",") != traceHeader {
				return nil, fmt.Errorf("trace line 1: want the header %q", traceHeader)
			}
			continue
		}
		if len(out) >= maxTraceApps {
			return nil, fmt.Errorf("trace: more than %d applications", maxTraceApps)
		}
		var n [5]int64
		for i, idx := range []int{0, 3, 4, 5, 6} {
			v, err := strconv.ParseInt(rec[idx], 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("trace line %d: field %d %q: want a number of 0 or more", line, idx+1, rec[idx])
			}
			n[i] = v
		}
		a := arrival{at: time.Duration(n[0]) * time.Millisecond, queue: rec[1], user: rec[2], containers: int(n[1]), memoryMB: n[2], vcores: int32(n[3]), run: time.Duration(n[4]) * time.Millisecond}
		switch {
		case a.queue == "" || a.user == "":
			return nil, fmt.Errorf("trace line %d: an application needs a queue and a user", line)
		case a.containers > maxTraceContainers:
			return nil, fmt.Errorf("trace line %d: %d containers, at most %d", line, a.containers, maxTraceContainers)
		case a.memoryMB < 1 || a.vcores < 1 || a.vcores > 1024:
			return nil, fmt.Errorf("trace line %d: a container needs memory and 1 to 1024 vcores", line)
		}
		if !strings.HasPrefix(a.queue, "root.") {
			a.queue = "root." + a.queue
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out, nil
}

func writeTrace(path string, trace []arrival) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(strings.Split(traceHeader, ","))
	for _, a := range trace {
		_ = w.Write([]string{strconv.FormatInt(a.at.Milliseconds(), 10), a.queue, a.user, strconv.Itoa(a.containers),
			strconv.FormatInt(a.memoryMB, 10), strconv.Itoa(int(a.vcores)), strconv.FormatInt(a.run.Milliseconds(), 10)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readQueueCapacities reads a queue file's leaves and their capacities.
func readQueueCapacities(path string) (string, map[string]float64, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	tree, err := scheduler.ParseQueueFile(path, src)
	if err != nil {
		return "", nil, err
	}
	caps := map[string]float64{}
	for _, q := range tree.Leaves(state.Resource{MemoryMB: 1 << 40, VCores: 1 << 30}) {
		caps[q.Name] = q.Capacity
	}
	return path, caps, nil
}
