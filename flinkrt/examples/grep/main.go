// grep keeps the lines of a text file or directory that match a regular
// expression, as Hadoop's Grep example does. Its operators chain into one
// task with no shuffle, so each parallel instance is a pipelined region of
// its own: a failure restarts the failed instance's region and the others
// run on.
//
//	grep --input PATH [--output DIR [--overwrite]] [--line-delay D] PATTERN
//	loom run -t per-job -p 4 bin/examples/grep --input logs/ --output matches/ 'ERROR|WARN'
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

func main() {
	input := flag.String("input", "", "text file or directory to search (required)")
	output := flag.String("output", "", "directory to write the matching lines to (default: stdout)")
	overwrite := flag.Bool("overwrite", false, "replace the part files an earlier run left in --output (otherwise a run into a directory that holds files is refused)")
	delay := flag.Duration("line-delay", 0, "wait this long before matching each line, to make a small input last (demos and tests)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: grep --input PATH [--output DIR] [--line-delay D] PATTERN")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *input == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	re, err := regexp.Compile(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "grep: pattern %q: %v\n", flag.Arg(0), err)
		os.Exit(2)
	}

	env := stream.NewEnv()
	lines := stream.FromSource(env, "lines", source.TextFile(*input)).UID("lines")
	matches := stream.FlatMap(lines, "match", func(line string, out stream.Collector[string]) {
		if *delay > 0 {
			time.Sleep(*delay)
		}
		if re.MatchString(line) {
			out.Collect(line)
		}
	})
	if *output != "" {
		stream.Sink(matches, "matches", sink.TextFile[string](*output).Overwrite(*overwrite)).UID("output")
	} else {
		stream.Print(matches)
	}
	if _, err := env.Execute("Grep " + re.String()); err != nil {
		fmt.Fprintln(os.Stderr, "grep:", err)
		os.Exit(1)
	}
}
