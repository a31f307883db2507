// slotsharing runs its source and its aggregation in two slot sharing
// groups, so they never share a slot: the job needs the source group's
// parallelism plus the aggregation group's. It sums the squares of
// 1..--count by their last digit and prints one sum per digit.
//
//	slotsharing [--count 100000] [-p-source 1] [-p-sum 2]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// DigitSum is the running sum of squares of numbers ending in Digit.
type DigitSum struct {
	Digit int64
	Sum   int64
}

func (d DigitSum) String() string { return fmt.Sprintf("(%d,%d)", d.Digit, d.Sum) }

func main() {
	count := flag.Int64("count", 100000, "numbers to square")
	pSource := flag.Int("p-source", 1, "parallelism of the source group")
	pSum := flag.Int("p-sum", 2, "parallelism of the aggregation group")
	flag.Parse()

	env := stream.NewEnv()
	nums := stream.FromSource(env, "numbers", source.Sequence(1, *count)).SetParallelism(*pSource)
	squares := stream.Map(nums, "square", func(n int64) DigitSum { return DigitSum{n % 10, n * n} }).SetParallelism(*pSource)
	// Every record at event time 0, so one event-time window holds the
	// whole run: the watermark at the end of the input fires it.
	timed := stream.AssignTimestampsAndWatermarks(squares, stream.ForBoundedOutOfOrderness(time.Second, func(d DigitSum) int64 { return 0 })).SetParallelism(*pSource)
	sums := stream.Window(stream.KeyBy(timed, func(d DigitSum) int64 { return d.Digit }), stream.TumblingEventTimeWindows(24*time.Hour)).
		Sum("Sum").SetParallelism(*pSum).SlotSharingGroup("aggregation")
	stream.Print(sums)
	if _, err := env.Execute("SlotSharingGroups"); err != nil {
		fmt.Fprintln(os.Stderr, "slotsharing:", err)
		os.Exit(1)
	}
}
