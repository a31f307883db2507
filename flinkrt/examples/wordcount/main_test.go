package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
)

var nonWord = regexp.MustCompile(`\W+`)

func TestTokenizeSplitsAsTheRegexp(t *testing.T) {
	for _, line := range append(hamlet, "", "  ", "A_b9--Zz", "ünïcode wörds", "x") {
		var got []string
		tokenize(line, collector(func(w WordCount) { got = append(got, w.Word) }))
		var want []string
		for _, w := range nonWord.Split(strings.ToLower(line), -1) {
			if w != "" {
				want = append(want, w)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%q: got %q, want %q", line, got, want)
		}
	}
}

type collector func(WordCount)

func (c collector) Collect(w WordCount) { c(w) }

// writeText writes about size bytes of varied English-like text.
func writeText(t testing.TB, size int) (string, int) {
	path := filepath.Join(t.TempDir(), "text.txt")
	var b strings.Builder
	words := 0
	for i := 0; b.Len() < size; i++ {
		line := hamlet[i%len(hamlet)]
		fmt.Fprintf(&b, "%s w%d\n", line, i%5000)
		words += countWords(line) + 1
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, words
}

// countWords counts a line's words as tokenize splits them: Split leaves
// an empty string before leading and after trailing punctuation, which is
// no word.
func countWords(line string) int {
	n := 0
	for _, w := range nonWord.Split(strings.ToLower(line), -1) {
		if w != "" {
			n++
		}
	}
	return n
}

// writeText's word count is the number of words tokenize emits.
func TestWriteTextCountsWords(t *testing.T) {
	path, words := writeText(t, 64<<10)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	emitted := 0
	for _, line := range strings.Split(string(b), "\n") {
		tokenize(line, collector(func(WordCount) { emitted++ }))
	}
	if emitted != words {
		t.Fatalf("writeText says %d words; tokenize emits %d", words, emitted)
	}
}

func TestWordCountOfAFile(t *testing.T) {
	path, _ := writeText(t, 200<<10)
	b, _ := os.ReadFile(path)
	want := map[string]int{}
	for _, w := range nonWord.Split(strings.ToLower(string(b)), -1) {
		if w != "" {
			want[w]++
		}
	}
	for _, p := range []int{1, 4} {
		env := stream.NewEnv().SetParallelism(p)
		out := sink.Collect[WordCount]()
		stream.Sink(build(env, path, 0, 0), "collect", out)
		if _, err := env.ExecuteContext(context.Background(), "wordcount"); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, wc := range out.Values() {
			got[wc.Word] = max(got[wc.Word], wc.Count)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("p=%d: counts differ from a plain count (%d words vs %d)", p, len(got), len(want))
		}
	}
}

// BenchmarkWordCount reads, splits and counts a 64 MB text in-process and
// reports words per second.
func BenchmarkWordCount(b *testing.B) {
	path, words := writeText(b, 64<<20)
	for _, p := range []int{1, 2} {
		b.Run(fmt.Sprintf("p=%d", p), func(b *testing.B) {
			var elapsed time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				env := stream.NewEnv().SetParallelism(p)
				stream.Sink(build(env, path, 0, 0), "discard", sink.Discard[WordCount]())
				runtime.GC()
				start := time.Now()
				done := make(chan struct{})
				sampled := make(chan uint64, 1)
				go func() { sampled <- heapPeak(done) }()
				if _, err := env.ExecuteContext(context.Background(), "wordcount"); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				close(done)
				peak = max(peak, <-sampled)
			}
			b.ReportMetric(float64(words)*float64(b.N)/elapsed.Seconds(), "words/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// heapPeak samples the heap in use until done.
func heapPeak(done chan struct{}) uint64 {
	var peak uint64
	var ms runtime.MemStats
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}
