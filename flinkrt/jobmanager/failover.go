package jobmanager

// Failover: which regions a failure restarts, the restart strategy's
// verdict, and when a restarting job may deploy again.

import (
	"fmt"
	"time"
)

// regionRestart is a region being restarted: its tasks are stopped, then
// after the restart delay it is deployed again once it has slots.
type regionRestart struct {
	since    time.Time // when its tasks were told to stop
	at       time.Time // when it may be deployed again
	deadline time.Time // when it fails the job without slots
}

// Fail fails the job with cause as its root cause, as a failed task
// would.
func (jm *JobMaster) Fail(cause string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	failing := jm.state == JobRunning
	jm.failLocked("", cause)
	jm.changedLocked()
	if failing {
		jm.cancelInBackground(nil)
	}
}

// failoverLocked handles a failure the job may recover from: the subtasks
// failed (by vertex and subtask; none for a failure of the whole job)
// failed, or were lost with their TaskManager or worker. The restart
// strategy decides whether the job recovers, from its latest checkpoint;
// the failover strategy whether the whole job restarts or only the
// regions of the failed subtasks.
func (jm *JobMaster) failoverLocked(failed [][2]int, task, cause string) {
	if jm.state != JobRunning {
		if jm.state != JobRestarting {
			jm.failLocked(task, cause)
		}
		return
	}
	regions := jm.regionsToRestartLocked(failed)
	if regions != nil && len(regions) == 0 {
		return // the failed subtasks' regions are restarting already
	}
	now := time.Now()
	delay, ok := jm.restart.restart(now)
	if !ok {
		jm.failLocked(task, cause+" ("+jm.restart.describe()+")")
		jm.cancelInBackground(nil)
		return
	}
	jm.restarts++
	jm.failure, jm.failureTask, jm.failureTime = cause, task, now
	if regions == nil {
		jm.restarting = map[int]*regionRestart{}
		jm.restartAt = now.Add(delay)
		jm.slotDeadline = jm.restartAt.Add(jm.timing.SlotTimeout)
		jm.abortCheckpointsLocked("the job is restarting")
		jm.log.Warn("job failed; restarting", "cause", cause, "delay", delay, "restart", jm.restarts)
		jm.setStateLocked(JobRestarting)
		jm.cancelInBackground(nil)
		return
	}
	at := now.Add(delay)
	for r := range regions {
		jm.restarting[r] = &regionRestart{since: now, at: at, deadline: at.Add(jm.timing.SlotTimeout)}
	}
	jm.abortCheckpointsLocked("a region of the job is restarting")
	jm.log.Warn("task failed; restarting its region", "cause", cause, "delay", delay, "restart", jm.restarts,
		"regions", len(regions), "of", jm.numRegions)
	jm.changedLocked()
	jm.cancelInBackground(regions)
}

// regionsToRestartLocked is the regions a failure of the subtasks failed
// restarts: nil for the whole job (a failure of the whole job, the full
// failover strategy, or every region touched), empty when they are all
// restarting already.
func (jm *JobMaster) regionsToRestartLocked(failed [][2]int) map[int]bool {
	if !jm.regionFailover || len(failed) == 0 {
		return nil
	}
	regions := map[int]bool{}
	for _, f := range failed {
		if r := jm.regions[f[0]][f[1]]; jm.restarting[r] == nil {
			regions[r] = true
		}
	}
	if len(regions)+len(jm.restarting) >= jm.numRegions {
		return nil
	}
	return regions
}

// failLocked fails the job with its root cause, the first failure.
func (jm *JobMaster) failLocked(task, cause string) {
	if JobTerminal(jm.state) || jm.state == JobFailing {
		return
	}
	if jm.state == JobCancelling {
		return // a task that fails as the job is canceled fails because it is
	}
	jm.abortCheckpointsLocked("the job is failing")
	if jm.failure == "" {
		jm.failure, jm.failureTask, jm.failureTime = cause, task, time.Now()
	}
	if !jm.deployed || jm.state == JobRestarting && jm.stoppedLocked(nil) {
		jm.setStateLocked(JobFailed)
		return
	}
	jm.setStateLocked(JobFailing)
}

// stoppedLocked says whether every task of the regions given (of the
// whole job when nil) has stopped.
func (jm *JobMaster) stoppedLocked(regions map[int]bool) bool {
	stopped := true
	jm.forEachTaskLocked(regions, func(_, _ int, t *subtask) {
		stopped = stopped && (taskTerminal(t.state) || t.state == TaskCreated)
	})
	return stopped
}

// endIfStoppedLocked ends a failing or cancelling job once every task has
// stopped, or when the cancel timeout has passed without word from them.
func (jm *JobMaster) endIfStoppedLocked() {
	if !jm.stoppedLocked(nil) && time.Since(jm.stateSince) < jm.timing.CancelTimeout {
		return
	}
	now := time.Now()
	for _, row := range jm.tasks {
		for _, t := range row {
			if !taskTerminal(t.state) {
				t.end = now
				t.enter(TaskCanceled, now)
			}
		}
	}
	switch {
	case jm.state == JobRestarting:
		// Tasks that did not say they stopped are taken as gone.
	case jm.state == JobFailing:
		jm.setStateLocked(JobFailed)
	case jm.stopping:
		jm.setStateLocked(JobFinished)
	default:
		jm.setStateLocked(JobCanceled)
	}
}

// regionsReadyLocked is the restarting regions ready to be deployed
// again: their tasks stopped and their restart delay passed. It also says
// when to look again. A region without the slots it needs past its
// deadline fails the job; tasks that do not say they stopped within the
// cancel timeout are taken as gone.
func (jm *JobMaster) regionsReadyLocked(now time.Time) (map[int]bool, time.Time) {
	ready := map[int]bool{}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for r, rr := range jm.restarting {
		if !jm.stoppedLocked(map[int]bool{r: true}) {
			if now.Sub(rr.since) < jm.timing.CancelTimeout {
				later(rr.since.Add(jm.timing.CancelTimeout))
				continue
			}
			jm.forEachTaskLocked(map[int]bool{r: true}, func(_, _ int, t *subtask) {
				if !taskTerminal(t.state) {
					t.end = now
					t.enter(TaskCanceled, now)
				}
			})
		}
		switch {
		case now.Before(rr.at):
			later(rr.at)
		case now.After(rr.deadline):
			jm.failLocked("", fmt.Sprintf("could not get the slots a restarting region of the job needs within %s: start more TaskManagers or lower the parallelism", jm.timing.SlotTimeout))
			jm.cancelInBackground(nil)
			return nil, time.Time{}
		default:
			ready[r] = true
			later(rr.deadline)
		}
	}
	return ready, next
}
