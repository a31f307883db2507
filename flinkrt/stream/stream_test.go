package stream_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

type wordCount struct {
	Word  string
	Count int
}

var nonWord = regexp.MustCompile(`\W+`)

// plainCount is the reference: the same splitting, counted in a map.
func plainCount(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, w := range nonWord.Split(strings.ToLower(line), -1) {
			if w != "" {
				want[w]++
			}
		}
	}
	return want
}

// finalCounts keeps the largest running count seen per word.
func finalCounts(got []wordCount) map[string]int {
	m := map[string]int{}
	for _, wc := range got {
		m[wc.Word] = max(m[wc.Word], wc.Count)
	}
	return m
}

func wordcount(env *stream.Env, input string) *sink.Collected[wordCount] {
	lines := stream.FromSource(env, "lines", source.TextFile(input))
	words := stream.FlatMap(lines, "split", func(line string, out stream.Collector[wordCount]) {
		for _, w := range nonWord.Split(strings.ToLower(line), -1) {
			if w != "" {
				out.Collect(wordCount{w, 1})
			}
		}
	})
	counts := stream.Sum(stream.KeyBy(words, func(wc wordCount) string { return wc.Word }), "Count")
	out := sink.Collect[wordCount]()
	stream.Sink(counts, "collect", out)
	return out
}

func TestWordCountMatchesPlainCount(t *testing.T) {
	input := filepath.Join("testdata", "words.txt")
	want := plainCount(t, input)
	for _, p := range []int{1, 4} {
		t.Run("p="+string(rune('0'+p)), func(t *testing.T) {
			env := stream.NewEnv().SetParallelism(p)
			out := wordcount(env, input)
			res, err := env.ExecuteContext(context.Background(), "wordcount")
			if err != nil {
				t.Fatal(err)
			}
			if res.State != "FINISHED" {
				t.Fatalf("state %s", res.State)
			}
			got := out.Values()
			total := 0
			for _, n := range want {
				total += n
			}
			if len(got) != total {
				t.Fatalf("%d running counts emitted, want one per word occurrence: %d", len(got), total)
			}
			if g := finalCounts(got); !maps.Equal(g, want) {
				t.Fatalf("counts differ from the plain count: %d words vs %d", len(g), len(want))
			}
		})
	}
}

func TestTextFileDirectorySplitsAcrossSubtasks(t *testing.T) {
	dir := t.TempDir()
	var all []string
	for f := 0; f < 3; f++ {
		var b strings.Builder
		for i := 0; i < 1000; i++ {
			line := strings.Repeat("x", i%50) + "-" + string(rune('a'+f)) + "-" + time.Duration(i).String()
			all = append(all, line)
			b.WriteString(line + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "in-"+string(rune('a'+f))), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Hidden and underscore files are skipped, as Flink does.
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("nope\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "_SUCCESS"), []byte("nope\n"), 0o644)
	for _, p := range []int{1, 3, 7} {
		env := stream.NewEnv().SetParallelism(p)
		out := sink.Collect[string]()
		stream.Sink(stream.FromSource(env, "lines", source.TextFile(dir)), "collect", out)
		if _, err := env.ExecuteContext(context.Background(), "lines"); err != nil {
			t.Fatal(err)
		}
		got := out.Values()
		slices.Sort(got)
		want := slices.Clone(all)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("p=%d: read %d lines, want each of the %d lines once", p, len(got), len(want))
		}
	}
}
