// Command soak runs a local cluster (`cluster up`, 3 NodeManagers) under
// a long steady load, distributed shells of 100 to 200 containers of
// /bin/true and, beside them, per-job wordcounts of a small input, and
// samples the ResourceManager every -sample: its resident memory, heap,
// goroutines, state rows and raft directory size. A probe submits a
// 20-container dshell every -probe and times it from submission until all
// its containers RUN; each sample carries the median and the 99th
// percentile of the probes since the last one. The nodes are sized so the
// load never fills them: the probe measures the RM's scheduling and the
// NMs' launching under load, not waiting for capacity. It prints a line
// per sample, writes them as CSV, and plots them into a PNG
// (docs/BENCHMARKS.md, "A cluster that runs for months").
//
//	go run ./scripts/soak -duration 3h -containers 1000000 -wordcounts 5000 -png docs/soak.png
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
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-project/loom/am/dshell"
	"github.com/loom-project/loom/localcluster"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/scripts/benchutil"
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
	Wordcounts int64
	SubmitMs   float64 // 20-container dshell, submit until all RUNNING: median of the probes
	SubmitP99  float64 // and their 99th percentile
	Probes     int
}

func main() {
	bin := flag.String("loom", "bin/loom", "the loom binary")
	duration := flag.Duration("duration", 10*time.Minute, "how long to run")
	target := flag.Int64("containers", 1_000_000, "stop after this many containers")
	every := flag.Duration("sample", time.Minute, "sampling interval")
	wordcounts := flag.Int64("wordcounts", 5000, "per-job wordcounts to run beside the shells (0: none)")
	wcWorkers := flag.Int("wordcount-workers", 2, "wordcounts in flight")
	workers := flag.Int("workers", 2, "dshell applications in flight")
	probeEvery := flag.Duration("probe", 5*time.Second, "how often to time a 20-container dshell")
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
	// Two shells of up to 200 containers, the wordcounts and the probe
	// fit at once with room to spare.
	cfg.NodeMemoryMB, cfg.NodeVCores = 32768, 512
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

	var containers, apps, failed, wcs atomic.Int64
	done := func() bool { return ctx.Err() != nil || (containers.Load() >= *target && wcs.Load() >= *wordcounts) }
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() && containers.Load() < *target {
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
				apps.Add(1)
			}
		}()
	}
	for w := 0; w < *wcWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() && wcs.Load() < *wordcounts {
				a := wcs.Add(1)
				out := filepath.Join(dir, "counts-"+strconv.FormatInt(a, 10))
				cmd := exec.Command(abs, "run", "-t", "per-job", "-p", "2", filepath.Join(filepath.Dir(abs), "wordcount"), "--input", words, "--output", out)
				cmd.Env = append(os.Environ(), "LOOM_CONFIG="+c.ClientConfig)
				if b, err := cmd.CombinedOutput(); err != nil {
					if ctx.Err() != nil {
						wcs.Add(-1) // cut off by the end of the run
						return
					}
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "soak: wordcount: %v\n%s", err, b)
				} else if err := checkCounts(out); err != nil {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "soak: wordcount %d: %v\n", a, err)
				}
				apps.Add(1)
				os.RemoveAll(out)
			}
		}()
	}
	var probeMu sync.Mutex
	var probes []float64
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(*probeEvery)
		defer t.Stop()
		for !done() {
			d, err := benchutil.UntilRunning(ctx, rm, abs, 20, 32)
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			probeMu.Lock()
			probes = append(probes, float64(d.Milliseconds()))
			probeMu.Unlock()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}()

	var samples []sample
	began := time.Now()
	take := func() {
		s := sample{Minute: time.Since(began).Minutes(), Containers: containers.Load(), Apps: apps.Load(), Failed: failed.Load(), Wordcounts: wcs.Load()}
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
		probeMu.Lock()
		window := probes
		probes = nil
		probeMu.Unlock()
		s.Probes = len(window)
		s.SubmitMs, s.SubmitP99 = percentile(window, 50), percentile(window, 99)
		samples = append(samples, s)
		fmt.Printf("%6.1f min  %9d containers %5d wordcounts %6d apps %3d failed  RM rss %6.1f MiB (anon %6.1f) heap %6.1f MiB goroutines %4.0f apps kept %5.0f raft %6.1f MiB  20-container dshell to RUNNING p50 %5.0f p99 %5.0f ms (%d)\n",
			s.Minute, s.Containers, s.Wordcounts, s.Apps, s.Failed, s.RSSMiB, s.AnonMiB, s.HeapMiB, s.Goroutines, s.Rows, s.RaftMiB, s.SubmitMs, s.SubmitP99, s.Probes)
	}
	tick := time.NewTicker(*every)
	for stopped := false; !stopped; {
		select {
		case <-ctx.Done():
			stopped = true
		case <-tick.C:
			stopped = done()
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
	fmt.Printf("soak: %d containers and %d wordcounts in %d applications over %.0f min, %d failed; RM rss %.1f -> %.1f MiB (max %.1f); 20-container dshell p99 %.0f ms in the first minute, %.0f ms in the last\n",
		last.Containers, last.Wordcounts, last.Apps, last.Minute, last.Failed, first.RSSMiB, last.RSSMiB, maxOf(samples, func(s sample) float64 { return s.RSSMiB }), first.SubmitP99, last.SubmitP99)
	c.Stop()
	if left := leftRunning(cfg.Dir); left != "" {
		fmt.Fprintln(os.Stderr, "soak: left running after the cluster stopped:", left)
		os.Exit(1)
	}
	if last.Failed > 0 {
		os.Exit(1)
	}
}

// percentile is the nearest-rank p-th percentile of vs (0 when empty).
func percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// checkCounts reads a wordcount's output directory: the input says "be"
// 400 times, so the running count prints (be,1) through (be,400), each
// once.
func checkCounts(dir string) error {
	seen := 0
	var last string
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() || !strings.HasPrefix(info.Name(), "part-") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "(be,") {
				seen++
				last = l
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if seen != 400 || last != "(be,400)" {
		return fmt.Errorf("%s: %d counts of \"be\" ending %q, want 400 ending (be,400)", dir, seen, last)
	}
	return nil
}

// leftRunning names the processes still running in or for the soak's
// cluster directory after the cluster stopped.
func leftRunning(dir string) string {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(cwd, dir) || strings.Contains(string(cmd), dir) {
			left = append(left, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " ")))
		}
	}
	return strings.Join(left, "; ")
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
	_ = w.Write([]string{"minute", "containers", "apps", "failed", "rm_rss_mib", "rm_anon_mib", "rm_heap_mib", "goroutines", "apps_kept", "raft_mib", "wordcounts", "dshell20_running_p50_ms", "dshell20_running_p99_ms", "probes"})
	for _, s := range samples {
		_ = w.Write([]string{f1(s.Minute), fmt.Sprint(s.Containers), fmt.Sprint(s.Apps), fmt.Sprint(s.Failed), f1(s.RSSMiB), f1(s.AnonMiB), f1(s.HeapMiB), f1(s.Goroutines), f1(s.Rows), f1(s.RaftMiB), fmt.Sprint(s.Wordcounts), f1(s.SubmitMs), f1(s.SubmitP99), fmt.Sprint(s.Probes)})
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
		func(s sample) float64 { return s.SubmitP99 },
	}
	const w, ph, pad = 900, 120, 10
	img := image.NewRGBA(image.Rect(0, 0, w, len(series)*(ph+pad)+pad))
	fill(img, img.Bounds(), color.White)
	colors := []color.RGBA{{200, 40, 40, 255}, {230, 120, 120, 255}, {40, 100, 200, 255}, {40, 150, 60, 255}, {160, 90, 20, 255}, {120, 60, 160, 255}, {20, 20, 20, 255}, {120, 120, 120, 255}}
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
