// Command soak runs a local cluster (`cluster up`, 3 NodeManagers) under
// a long steady load, distributed shells of 100 to 200 containers of
// /bin/true and, every few of them, a per-job wordcount, and samples the
// ResourceManager every -sample: its resident memory, heap, goroutines,
// state rows, raft directory size, and the time from submitting a
// 20-container dshell until all its containers RUN. It prints a line per
// sample, writes them as CSV, and plots them into a PNG
// (docs/BENCHMARKS.md, "A cluster that runs for months").
//
//	go run ./scripts/soak -duration 2h -containers 1000000 -png docs/soak.png
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"loom/am/dshell"
	"loom/localcluster"
	"loom/proto/yarnpb"
	"loom/rm/rmclient"
	"loom/scripts/benchutil"
)

type sample struct {
	Minute     float64
	Containers int64
	Apps       int64
	Failed     int64
	RSSMiB     float64
	AnonMiB    float64 // of RSS, what is not the raft log's mapped file
	HeapMiB    float64
	Goroutines float64
	Rows       float64 // applications in the state
	RaftMiB    float64
	SubmitMs   float64 // 20-container dshell, submit until all RUNNING
}

func main() {
	bin := flag.String("loom", "bin/loom", "the loom binary")
	duration := flag.Duration("duration", 10*time.Minute, "how long to run")
	target := flag.Int64("containers", 1_000_000, "stop after this many containers")
	every := flag.Duration("sample", time.Minute, "sampling interval")
	wordcountEvery := flag.Int("wordcount-every", 20, "a per-job wordcount after every N dshell applications (0: none)")
	workers := flag.Int("workers", 2, "dshell applications in flight")
	port := flag.Int("port", 19132, "RM port (raft uses port + 2)")
	pngOut := flag.String("png", "", "plot the samples into this PNG")
	csvOut := flag.String("csv", "", "write the samples to this CSV file")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fail(err)
	}
	dir, err := os.MkdirTemp("", "loom-soak-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	cfg := localcluster.DefaultConfig()
	cfg.Binary, cfg.Dir, cfg.LogLevel = abs, filepath.Join(dir, "cluster"), "warn"
	cfg.NodeMemoryMB, cfg.NodeVCores = 16384, 128
	cfg.RMAddr, cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", *port), fmt.Sprintf("127.0.0.1:%d", *port+56)
	ctx, stop := context.WithTimeout(context.Background(), *duration)
	defer stop()
	c, err := localcluster.Start(context.Background(), cfg)
	if err != nil {
		fail(err)
	}
	defer c.Stop()
	c.Supervise(os.Stderr)
	rm, err := rmclient.New([]string{cfg.RMAddr}, c.Client)
	if err != nil {
		fail(err)
	}
	defer rm.Close()
	http := rmclient.HTTPClient(c.Client)
	words := filepath.Join(dir, "words.txt")
	if err := os.WriteFile(words, []byte(strings.Repeat("to be or not to be that is the question\n", 200)), 0o644); err != nil {
		fail(err)
	}

	var containers, apps, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && containers.Load() < *target {
				n := 100 + rand.IntN(101)
				id, err := dshell.Submit(ctx, rm, dshell.Options{NumContainers: n, MemoryMB: 32, VCores: 1, Command: []string{"/bin/true"}, LoomBinary: abs})
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintln(os.Stderr, "soak: submit:", err)
						failed.Add(1)
					}
					continue
				}
				r, err := rm.WaitFinished(context.Background(), id, nil)
				if err != nil || r.FinalStatus != yarnpb.FinalStatus_SUCCEEDED {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "soak: %s: %v %v\n", id, err, r.GetDiagnostics())
				}
				containers.Add(int64(n))
				if a := apps.Add(1); *wordcountEvery > 0 && a%int64(*wordcountEvery) == 0 {
					out := filepath.Join(dir, "counts-"+strconv.FormatInt(a, 10))
					cmd := exec.Command(abs, "run", "-t", "per-job", "-p", "2", filepath.Join(filepath.Dir(abs), "wordcount"), "--input", words, "--output", out)
					cmd.Env = append(os.Environ(), "LOOM_CONFIG="+c.ClientConfig)
					if b, err := cmd.CombinedOutput(); err != nil {
						failed.Add(1)
						fmt.Fprintf(os.Stderr, "soak: wordcount: %v\n%s", err, b)
					}
					os.RemoveAll(out)
				}
			}
		}()
	}

	var samples []sample
	began := time.Now()
	take := func() {
		s := sample{Minute: time.Since(began).Minutes(), Containers: containers.Load(), Apps: apps.Load(), Failed: failed.Load()}
		s.RSSMiB, s.AnonMiB = rssMiB(c.RM.Pid())
		if resp, err := http.Get("https://" + cfg.HTTPAddr + "/ws/v1/cluster/info"); err == nil {
			var info struct {
				ClusterInfo struct {
					Rows    map[string]float64 `json:"stateRows"`
					Runtime map[string]float64 `json:"runtime"`
				} `json:"clusterInfo"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&info)
			resp.Body.Close()
			s.HeapMiB = info.ClusterInfo.Runtime["heapAllocBytes"] / (1 << 20)
			s.Goroutines = info.ClusterInfo.Runtime["goroutines"]
			s.Rows = info.ClusterInfo.Rows["applications"]
		}
		s.RaftMiB = float64(dirSize(filepath.Join(cfg.Dir, "rm", "raft"))) / (1 << 20)
		d, err := benchutil.UntilRunning(context.Background(), rm, abs, 20, 32)
		if err != nil {
			fail(err)
		}
		s.SubmitMs = float64(d.Milliseconds())
		samples = append(samples, s)
		fmt.Printf("%6.1f min  %9d containers %6d apps %3d failed  RM rss %6.1f MiB (anon %6.1f) heap %6.1f MiB goroutines %4.0f apps kept %5.0f raft %6.1f MiB  20-container dshell to RUNNING %5.0f ms\n",
			s.Minute, s.Containers, s.Apps, s.Failed, s.RSSMiB, s.AnonMiB, s.HeapMiB, s.Goroutines, s.Rows, s.RaftMiB, s.SubmitMs)
	}
	take()
	tick := time.NewTicker(*every)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			if containers.Load() >= *target {
				done = true
			}
		}
		take()
	}
	tick.Stop()
	stop()
	wg.Wait()
	if *csvOut != "" {
		writeCSV(*csvOut, samples)
	}
	if *pngOut != "" {
		plot(*pngOut, samples)
	}
	first, last := samples[0], samples[len(samples)-1]
	fmt.Printf("soak: %d containers in %d applications over %.0f min, %d failed; RM rss %.1f -> %.1f MiB (max %.1f); 20-container dshell %0.f -> %.0f ms\n",
		last.Containers, last.Apps, last.Minute, last.Failed, first.RSSMiB, last.RSSMiB, maxOf(samples, func(s sample) float64 { return s.RSSMiB }), first.SubmitMs, last.SubmitMs)
	if last.Failed > 0 {
		os.Exit(1)
	}
}

// rssMiB is a process's resident memory, and the anonymous part of it.
func rssMiB(pid int) (rss, anon float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "RssAnon":
			anon = kb / 1024
		}
	}
	return rss, anon
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func writeCSV(path string, samples []sample) {
	f, err := os.Create(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"minute", "containers", "apps", "failed", "rm_rss_mib", "rm_anon_mib", "rm_heap_mib", "goroutines", "apps_kept", "raft_mib", "dshell20_running_ms"})
	for _, s := range samples {
		_ = w.Write([]string{f1(s.Minute), fmt.Sprint(s.Containers), fmt.Sprint(s.Apps), fmt.Sprint(s.Failed), f1(s.RSSMiB), f1(s.AnonMiB), f1(s.HeapMiB), f1(s.Goroutines), f1(s.Rows), f1(s.RaftMiB), f1(s.SubmitMs)})
	}
	w.Flush()
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func maxOf(samples []sample, f func(sample) float64) float64 {
	m := 0.0
	for _, s := range samples {
		m = max(m, f(s))
	}
	return m
}

// plot draws one panel per series against minutes: a line and its
// maximum as a bar on the left, in a PNG (no dependency beyond the
// standard library; labels are the panels' order, in the docs).
func plot(path string, samples []sample) {
	series := []func(sample) float64{
		func(s sample) float64 { return s.RSSMiB },
		func(s sample) float64 { return s.AnonMiB },
		func(s sample) float64 { return s.HeapMiB },
		func(s sample) float64 { return s.Goroutines },
		func(s sample) float64 { return s.Rows },
		func(s sample) float64 { return s.RaftMiB },
		func(s sample) float64 { return s.SubmitMs },
	}
	const w, ph, pad = 900, 120, 10
	img := image.NewRGBA(image.Rect(0, 0, w, len(series)*(ph+pad)+pad))
	fill(img, img.Bounds(), color.White)
	colors := []color.RGBA{{200, 40, 40, 255}, {230, 120, 120, 255}, {40, 100, 200, 255}, {40, 150, 60, 255}, {160, 90, 20, 255}, {120, 60, 160, 255}, {20, 20, 20, 255}}
	maxMin := samples[len(samples)-1].Minute
	for i, f := range series {
		top := pad + i*(ph+pad)
		frame := image.Rect(pad, top, w-pad, top+ph)
		fill(img, frame, color.RGBA{245, 245, 245, 255})
		// Scale from zero, so a flat curve looks flat.
		hi := maxOf(samples, f) * 1.1
		if hi == 0 {
			hi = 1
		}
		px := func(s sample) (int, int) {
			x := frame.Min.X + int(float64(frame.Dx()-1)*s.Minute/max(maxMin, 1e-9))
			y := frame.Max.Y - 1 - int(float64(frame.Dy()-1)*f(s)/hi)
			return x, y
		}
		for j := 1; j < len(samples); j++ {
			x0, y0 := px(samples[j-1])
			x1, y1 := px(samples[j])
			line(img, x0, y0, x1, y1, colors[i])
		}
	}
	out, err := os.Create(path)
	if err != nil {
		fail(err)
	}
	defer out.Close()
	if err := png.Encode(out, img); err != nil {
		fail(err)
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.Set(x, y, c)
		}
	}
}

// line draws a two-pixel line (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	for e := dx + dy; ; {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}
