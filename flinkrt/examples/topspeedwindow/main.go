// topspeedwindow is Flink's TopSpeedWindowing: cars report their speed
// and distance every 100 ms; for each car, every time it has driven
// another 50 m, the job emits its top speed over the last 10 s.
//
//	topspeedwindow [--num-cars 2] [--duration 5s] [--output DIR [--overwrite]]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// CarEvent is one report of a car.
type CarEvent struct {
	CarID    int
	Speed    int     // km/h
	Distance float64 // m
	Time     int64   // epoch ms
}

// String prints an event as Flink prints its tuple.
func (e CarEvent) String() string {
	return fmt.Sprintf("(%d,%d,%s,%d)", e.CarID, e.Speed, fmt.Sprint(e.Distance), e.Time)
}

func main() {
	numCars := flag.Int("num-cars", 2, "number of cars")
	duration := flag.Duration("duration", 5*time.Second, "how long the cars drive (0: until canceled)")
	output := flag.String("output", "", "directory to write results to (default: stdout)")
	overwrite := flag.Bool("overwrite", false, "replace the part files an earlier run left in --output (otherwise a run into a directory that holds files is refused)")
	evictAfter := flag.Duration("eviction", 10*time.Second, "how far back a top speed looks")
	triggerMeters := flag.Float64("trigger-meters", 50, "distance between results of a car")
	flag.Parse()

	env := stream.NewEnv()
	cars := stream.FromSource(env, "cars", carSource(*numCars, *duration))
	timed := stream.AssignTimestampsAndWatermarks(cars, stream.ForMonotonousTimestamps(func(e CarEvent) int64 { return e.Time }))
	top := stream.Window(stream.KeyBy(timed, func(e CarEvent) int { return e.CarID }), stream.GlobalWindows()).
		Evictor(stream.TimeEvictor[CarEvent](*evictAfter)).
		Trigger(stream.DeltaTrigger(*triggerMeters, func(old, new CarEvent) float64 { return new.Distance - old.Distance })).
		MaxBy("Speed")
	if *output != "" {
		stream.Sink(top, "top speeds", sink.TextFile[CarEvent](*output).Overwrite(*overwrite))
	} else {
		stream.Print(top)
	}
	if _, err := env.Execute("CarTopSpeedWindowingExample"); err != nil {
		fmt.Fprintln(os.Stderr, "topspeedwindow:", err)
		os.Exit(1)
	}
}

// carSource is Flink's CarSource: every 100 ms each car speeds up or slows
// down by 5 km/h (within 0..100) and reports where it is.
func carSource(numCars int, duration time.Duration) source.Source[CarEvent] {
	return source.Func("CarSource", func(ctx source.Context[CarEvent]) error {
		speeds := make([]int, numCars)
		distances := make([]float64, numCars)
		for i := range speeds {
			speeds[i] = 50
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var end <-chan time.Time
		if duration > 0 {
			end = time.After(duration)
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-end:
				return nil
			case <-ctx.Idle():
				ctx.Yield()
			case <-tick.C:
				for car := range speeds {
					if rand.IntN(2) == 0 {
						speeds[car] = min(100, speeds[car]+5)
					} else {
						speeds[car] = max(0, speeds[car]-5)
					}
					distances[car] += float64(speeds[car]) / 3.6
					ctx.Collect(CarEvent{car, speeds[car], distances[car], time.Now().UnixMilli()})
				}
			}
		}
	})
}
