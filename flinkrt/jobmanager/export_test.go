package jobmanager

import "time"

// Retire runs the archive's retirement as if it were now.
func (jm *JobManager) Retire(now time.Time) { jm.retire(now) }
