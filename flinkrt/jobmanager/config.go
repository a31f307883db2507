package jobmanager

import "slices"

// configKeys are the job configuration keys loom reads (Flink's names):
// what `loom run -D` and Env.SetConfig may set.
var configKeys = []string{
	ConfCheckpointInterval, ConfCheckpointTimeout, ConfCheckpointMinPause, ConfCheckpointMaxConc,
	ConfCheckpointTolerable, ConfCheckpointRetained, ConfCheckpointDir, ConfSavepointDir,
	ConfSavepointPath, ConfAllowNonRestored, ConfRestartStrategy, "restart-strategy",
	"restart-strategy.fixed-delay.attempts", "restart-strategy.fixed-delay.delay",
	"restart-strategy.failure-rate.max-failures-per-interval", "restart-strategy.failure-rate.failure-rate-interval",
	"restart-strategy.failure-rate.delay",
	"restart-strategy.exponential-delay.initial-backoff", "restart-strategy.exponential-delay.max-backoff",
	"restart-strategy.exponential-delay.reset-backoff-threshold", "restart-strategy.exponential-delay.attempts-before-reset-backoff",
	"restart-strategy.exponential-delay.backoff-multiplier", "restart-strategy.exponential-delay.jitter-factor",
	ConfFailoverStrategy, "pipeline.buffer-timeout", "parallelism.default",
}

// ConfigKeys are the job configuration keys loom reads, sorted.
func ConfigKeys() []string { return slices.Sorted(slices.Values(configKeys)) }

// KnownConfigKey reports whether loom reads the job configuration key k.
func KnownConfigKey(k string) bool { return slices.Contains(configKeys, k) }
