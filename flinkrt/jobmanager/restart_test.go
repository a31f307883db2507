package jobmanager

import (
	"strings"
	"testing"
	"time"
)

func TestRestartStrategies(t *testing.T) {
	now := time.Unix(1000, 0)
	fixed, err := newRestartStrategy(map[string]string{"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "2", "restart-strategy.fixed-delay.delay": "250 ms"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if d, ok := fixed.restart(now); !ok || d != 250*time.Millisecond {
			t.Fatalf("fixed-delay restart %d: %v %v", i+1, d, ok)
		}
	}
	if _, ok := fixed.restart(now); ok {
		t.Error("fixed-delay restarted a third time")
	}

	rate, _ := newRestartStrategy(map[string]string{"restart-strategy.type": "failure-rate", "restart-strategy.failure-rate.max-failures-per-interval": "2", "restart-strategy.failure-rate.failure-rate-interval": "1 min"}, false)
	rate.restart(now)
	rate.restart(now.Add(10 * time.Second))
	if _, ok := rate.restart(now.Add(20 * time.Second)); ok {
		t.Error("a third failure within a minute restarted")
	}
	if _, ok := rate.restart(now.Add(5 * time.Minute)); !ok {
		t.Error("a failure long after the others did not restart")
	}

	exp, _ := newRestartStrategy(map[string]string{"restart-strategy.exponential-delay.jitter-factor": "0"}, true)
	var delays []time.Duration
	for i := 0; i < 3; i++ {
		d, ok := exp.restart(now.Add(time.Duration(i) * time.Second))
		if !ok {
			t.Fatal("exponential-delay gave up")
		}
		delays = append(delays, d)
	}
	if delays[0] != time.Second || delays[1] != 1500*time.Millisecond || delays[2] != 2250*time.Millisecond {
		t.Errorf("exponential delays %v, want 1s 1.5s 2.25s (Flink's defaults)", delays)
	}

	if none, _ := newRestartStrategy(map[string]string{}, false); none.describe() != (noRestart{}).describe() {
		t.Error("without checkpoints the default is not none")
	}
	if _, err := newRestartStrategy(map[string]string{"restart-strategy.type": "sometimes"}, false); err == nil {
		t.Error("an unknown strategy was taken")
	}
}

// The job configuration page says which restart strategy a job has, as
// Flink's does: none without checkpoints, exponential delay with them.
func TestRestartStrategyAsTheConfigPageShowsIt(t *testing.T) {
	for _, c := range []struct {
		conf map[string]string
		want string
	}{
		{map[string]string{}, "Restart deactivated."},
		{map[string]string{ConfCheckpointInterval: "1s"}, "Restart with exponential delay: initial backoff 1000 ms"},
		{map[string]string{"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "3", "restart-strategy.fixed-delay.delay": "100 ms"}, "Restart with fixed delay (100 ms). #3 restart attempts."},
		{map[string]string{"restart-strategy.type": "failure-rate"}, "Failure rate restart with maximum of"},
	} {
		if got := restartText(c.conf); !strings.HasPrefix(got, c.want) {
			t.Errorf("%v: %q, want it to start %q", c.conf, got, c.want)
		}
	}
}
