// wordcount counts words, as Flink's WordCount example: lines from a text
// file or directory (--input; Hamlet's soliloquy when none is given) are
// lower-cased and split on non-word characters, and a running count per
// word is printed or written to --output.
//
//	wordcount [--input PATH] [--output DIR [--overwrite]]
//	loom run -t remote --jobmanager HOST:PORT bin/examples/wordcount --input PATH --output DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// WordCount is a word and how often it was seen so far.
type WordCount struct {
	Word  string
	Count int
}

// String prints a count as Flink prints a tuple.
func (w WordCount) String() string { return fmt.Sprintf("(%s,%d)", w.Word, w.Count) }

func main() {
	input := flag.String("input", "", "text file or directory to count (default: a built-in text)")
	output := flag.String("output", "", "directory to write counts to (default: stdout)")
	overwrite := flag.Bool("overwrite", false, "replace the part files an earlier run left in --output (otherwise a run into a directory that holds files is refused)")
	discard := flag.Bool("discard", false, "count without writing the counts anywhere (benchmarks)")
	delay := flag.Duration("line-delay", 0, "wait this long before splitting each line, to make a small input last (demos and tests)")
	pEnds := flag.Int("p-ends", 0, "run the source and the sink at this parallelism, not -p's")
	flag.Parse()

	env := stream.NewEnv()
	counts := build(env, *input, *delay, *pEnds)
	var out stream.DataStream[WordCount]
	switch {
	case *discard:
		out = stream.Sink(counts, "discard", sink.Discard[WordCount]())
	case *output != "":
		out = stream.Sink(counts, "counts", sink.TextFile[WordCount](*output).Overwrite(*overwrite)).UID("output")
	default:
		out = stream.Print(counts)
	}
	if *pEnds > 0 {
		out.SetParallelism(*pEnds)
	}
	if _, err := env.Execute("WordCount"); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

// build adds the counting to env and returns the running counts. The
// stateful operators have UIDs, so a savepoint of one version of the job
// (say with --line-delay) restores into another (without it).
func build(env *stream.Env, input string, delay time.Duration, pSource int) stream.DataStream[WordCount] {
	var lines stream.DataStream[string]
	if input != "" {
		lines = stream.FromSource(env, "lines", source.TextFile(input)).UID("lines")
	} else {
		lines = stream.FromSource(env, "lines", source.Generator(int64(len(hamlet)), func(i int64) string { return hamlet[i] })).UID("lines")
	}
	if pSource > 0 {
		lines = lines.SetParallelism(pSource)
	}
	if delay > 0 {
		lines = stream.Map(lines, "delay", func(l string) string { time.Sleep(delay); return l })
		if pSource > 0 {
			lines = lines.SetParallelism(pSource)
		}
	}
	words := stream.FlatMapWith(lines, "tokenizer", func() stream.FlatMapFunction[string, WordCount] { return &tokenizer{} })
	return stream.Sum(stream.KeyBy(words, func(w WordCount) string { return w.Word }), "Count").UID("counts")
}

// tokenizer counts the lines it splits in the metric "lines" of its
// operator (flink_taskmanager_job_task_operator_lines in Prometheus).
type tokenizer struct{ lines stream.MetricCounter }

func (t *tokenizer) Open(ctx *stream.RuntimeContext) (err error) {
	t.lines, err = ctx.Metrics().Counter("lines")
	return err
}

func (t *tokenizer) FlatMap(line string, out stream.Collector[WordCount]) error {
	t.lines.Inc()
	tokenize(line, out)
	return nil
}

// tokenize emits (word, 1) for each run of word characters ([0-9A-Za-z_],
// as the regular expression \W+ splits) of the lower-cased line.
func tokenize(line string, out stream.Collector[WordCount]) {
	lower := toLower(line)
	start := -1
	for i := 0; i < len(lower); i++ {
		if isWord(lower[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out.Collect(WordCount{lower[start:i], 1})
			start = -1
		}
	}
	if start >= 0 {
		out.Collect(WordCount{lower[start:], 1})
	}
}

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c >= 'A' && c <= 'Z'
}

// toLower lower-cases ASCII letters, copying the line only when it has one.
func toLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
