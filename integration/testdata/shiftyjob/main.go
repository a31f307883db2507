// shiftyjob builds a different graph when it runs as a worker than when it
// is planned: the TaskManager must refuse it.
package main

import (
	"fmt"
	"os"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

func main() {
	env := stream.NewEnv()
	nums := stream.FromSource(env, "numbers", source.Sequence(0, 1000))
	if os.Getenv("LOOM_FLINK_ROLE") == "worker" {
		nums = nums.Filter("evens", func(n int64) bool { return n%2 == 0 })
	}
	stream.Sink(nums, "discard", sink.Discard[int64]())
	if _, err := env.Execute("shifty"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
