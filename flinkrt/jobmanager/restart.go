package jobmanager

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// restartStrategy decides whether a failed job restarts, and after how
// long: Flink's restart strategies, configured by Flink's keys.
type restartStrategy interface {
	// restart records a failure at now and says how long to wait before
	// restarting, or false when the job must fail.
	restart(now time.Time) (time.Duration, bool)
	// describe names the strategy for a failure's message.
	describe() string
	// String is the strategy as Flink's job configuration shows it.
	String() string
}

// configDuration reads a duration as Flink writes them: "10 s", "10s",
// "1 min", or a number of milliseconds.
func configDuration(conf map[string]string, key string, def time.Duration) (time.Duration, error) {
	v, ok := conf[key]
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	v = strings.ReplaceAll(strings.TrimSpace(v), " ", "")
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(ms) * time.Millisecond, nil
	}
	for long, short := range map[string]string{"min": "m", "sec": "s", "hour": "h"} {
		if strings.HasSuffix(v, long) {
			v = strings.TrimSuffix(v, long) + short
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want a duration such as 10s or 500ms", key, conf[key])
	}
	return d, nil
}

func configInt(conf map[string]string, key string, def int) (int, error) {
	v, ok := conf[key]
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: want a number, 0 or more", key, v)
	}
	return n, nil
}

func configFloat(conf map[string]string, key string, def float64) (float64, error) {
	v, ok := conf[key]
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%s %q: want a number, 0 or more", key, v)
	}
	return f, nil
}

// RestartStrategies are the values of restart-strategy.type.
var RestartStrategies = []string{"none", "fixed-delay", "exponential-delay", "failure-rate"}

// newRestartStrategy reads restart-strategy.type and its options. With
// none set, a job that takes checkpoints restarts with exponential delay
// and one that does not fails, as in Flink.
func newRestartStrategy(conf map[string]string, checkpointing bool) (restartStrategy, error) {
	kind := strings.ToLower(strings.TrimSpace(conf["restart-strategy.type"]))
	if kind == "" {
		kind = strings.ToLower(strings.TrimSpace(conf["restart-strategy"]))
	}
	if kind == "" {
		kind = "none"
		if checkpointing {
			kind = "exponential-delay"
		}
	}
	var errs []error
	dur := func(key string, def time.Duration) time.Duration {
		d, err := configDuration(conf, key, def)
		if err != nil {
			errs = append(errs, err)
		}
		return d
	}
	num := func(key string, def int) int {
		n, err := configInt(conf, key, def)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	var s restartStrategy
	switch kind {
	case "none", "off", "disable":
		s = noRestart{}
	case "fixed-delay", "fixeddelay":
		s = &fixedDelay{attempts: num("restart-strategy.fixed-delay.attempts", 1), delay: dur("restart-strategy.fixed-delay.delay", time.Second)}
	case "failure-rate", "failurerate":
		s = &failureRate{
			max:      num("restart-strategy.failure-rate.max-failures-per-interval", 1),
			interval: dur("restart-strategy.failure-rate.failure-rate-interval", time.Minute),
			delay:    dur("restart-strategy.failure-rate.delay", time.Second),
		}
	case "exponential-delay", "exponentialdelay":
		e := &exponentialDelay{
			initial:  dur("restart-strategy.exponential-delay.initial-backoff", time.Second),
			max:      dur("restart-strategy.exponential-delay.max-backoff", time.Minute),
			reset:    dur("restart-strategy.exponential-delay.reset-backoff-threshold", time.Hour),
			attempts: num("restart-strategy.exponential-delay.attempts-before-reset-backoff", math.MaxInt32),
		}
		var err error
		if e.multiplier, err = configFloat(conf, "restart-strategy.exponential-delay.backoff-multiplier", 1.5); err != nil {
			errs = append(errs, err)
		}
		if e.jitter, err = configFloat(conf, "restart-strategy.exponential-delay.jitter-factor", 0.1); err != nil {
			errs = append(errs, err)
		}
		if e.multiplier < 1 {
			errs = append(errs, fmt.Errorf("restart-strategy.exponential-delay.backoff-multiplier %g: want 1 or more", e.multiplier))
		}
		s = e
	default:
		return nil, fmt.Errorf("restart strategy %q: want one of %s", kind, strings.Join(RestartStrategies, ", "))
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return s, nil
}

type noRestart struct{}

func (noRestart) restart(time.Time) (time.Duration, bool) { return 0, false }
func (noRestart) describe() string                        { return "the restart strategy is none" }
func (noRestart) String() string                          { return "Restart deactivated." }

type fixedDelay struct {
	attempts, done int
	delay          time.Duration
}

func (f *fixedDelay) restart(time.Time) (time.Duration, bool) {
	if f.done >= f.attempts {
		return 0, false
	}
	f.done++
	return f.delay, true
}

func (f *fixedDelay) String() string {
	return fmt.Sprintf("Restart with fixed delay (%d ms). #%d restart attempts.", f.delay.Milliseconds(), f.attempts)
}

func (f *fixedDelay) describe() string {
	return fmt.Sprintf("the fixed-delay restart strategy allows %d restarts and they are used up", f.attempts)
}

type failureRate struct {
	max             int
	interval, delay time.Duration
	failures        []time.Time
}

func (f *failureRate) restart(now time.Time) (time.Duration, bool) {
	kept := f.failures[:0]
	for _, t := range f.failures {
		if now.Sub(t) < f.interval {
			kept = append(kept, t)
		}
	}
	f.failures = append(kept, now)
	if len(f.failures) > f.max {
		return 0, false
	}
	return f.delay, true
}

func (f *failureRate) String() string {
	return fmt.Sprintf("Failure rate restart with maximum of %d failures within interval %d ms and fixed delay %d ms.", f.max, f.interval.Milliseconds(), f.delay.Milliseconds())
}

func (f *failureRate) describe() string {
	return fmt.Sprintf("the failure-rate restart strategy allows %d failures in %s and that rate was passed", f.max, f.interval)
}

type exponentialDelay struct {
	initial, max, reset time.Duration
	multiplier, jitter  float64
	attempts            int
	current             time.Duration
	count               int
	last                time.Time
}

func (e *exponentialDelay) restart(now time.Time) (time.Duration, bool) {
	if e.current == 0 || (!e.last.IsZero() && now.Sub(e.last) >= e.reset+e.current) {
		e.current, e.count = e.initial, 0
	} else {
		e.current = min(time.Duration(float64(e.current)*e.multiplier), e.max)
	}
	e.count++
	if e.count > e.attempts {
		return 0, false
	}
	e.last = now
	d := e.current
	if e.jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * e.jitter * float64(d))
	}
	return max(d, 0), true
}

func (e *exponentialDelay) String() string {
	return fmt.Sprintf("Restart with exponential delay: initial backoff %d ms, max backoff %d ms, multiplier %g, reset backoff threshold %d ms, jitter %g, attempts before reset %d.",
		e.initial.Milliseconds(), e.max.Milliseconds(), e.multiplier, e.reset.Milliseconds(), e.jitter, e.attempts)
}

func (e *exponentialDelay) describe() string {
	return fmt.Sprintf("the exponential-delay restart strategy allows %d restarts before a reset and they are used up", e.attempts)
}

// ConfFailoverStrategy is Flink's key for how much of a job a failure
// restarts: "region" (the default) restarts the failed task's pipelined
// region, "full" the whole job.
const ConfFailoverStrategy = "jobmanager.execution.failover-strategy"

// regionFailover reads the failover strategy: true for region.
func regionFailover(conf map[string]string) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(conf[ConfFailoverStrategy])); v {
	case "", "region":
		return true, nil
	case "full":
		return false, nil
	default:
		return false, fmt.Errorf("%s %q: want region or full", ConfFailoverStrategy, v)
	}
}
