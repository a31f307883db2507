package jobmanager

// The JobMaster's TaskManagers: slots offered, heartbeats, loss, and
// freeing the slots when the job ends.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
)

type tmConn struct {
	id, addr string
	release  func() // the pooled connection behind client
	client   flinkpb.TaskExecutorClient
	lastOK   time.Time
}

// heartbeat asks each TaskManager of the job whether it still holds the
// job's slots; one silent past the timeout is lost.
func (jm *JobMaster) heartbeat(ctx context.Context) {
	jm.mu.Lock()
	var conns []*tmConn
	for _, c := range jm.tms {
		conns = append(conns, c)
	}
	jm.mu.Unlock()
	// All at once: one slow TaskManager does not hold up the others'
	// heartbeats, however many there are.
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jm.heartbeatOne(ctx, c)
		}()
	}
	wg.Wait()
}

func (jm *JobMaster) heartbeatOne(ctx context.Context, c *tmConn) {
	hctx, cancel := context.WithTimeout(ctx, jm.timing.HeartbeatInterval)
	resp, err := c.client.Heartbeat(hctx, &flinkpb.JobMasterHeartbeat{JobId: jm.id})
	cancel()
	now := time.Now()
	jm.mu.Lock()
	switch {
	case err == nil:
		c.lastOK = now
		jm.takeMetricsLocked(c.id, resp.GetMetrics())
	case gone(err):
		jm.mu.Unlock()
		cause := fmt.Sprintf("TaskManager %s at %s is gone: its address refuses connections", c.id, c.addr)
		jm.TaskManagerLost(c.id, cause)
		jm.rm.RemoveTaskManager(c.id, cause)
		return
	case now.Sub(c.lastOK) > jm.timing.HeartbeatTimeout:
		jm.mu.Unlock()
		jm.TaskManagerLost(c.id, fmt.Sprintf("TaskManager %s at %s is unreachable: no heartbeat answer for %s (%v)", c.id, c.addr, jm.timing.HeartbeatTimeout, status.Convert(err).Message()))
		return
	}
	jm.mu.Unlock()
}

// takeMetricsLocked records the counts a TaskManager's heartbeat answer
// carries for the attempts it runs now.
func (jm *JobMaster) takeMetricsLocked(tmID string, ms []*flinkpb.SubtaskMetrics) {
	for _, m := range ms {
		if m.Vertex < 0 || int(m.Vertex) >= len(jm.tasks) || m.Subtask < 0 || int(m.Subtask) >= len(jm.tasks[m.Vertex]) || m.Io == nil {
			continue
		}
		if t := jm.tasks[m.Vertex][m.Subtask]; t.tm == tmID && int(m.Attempt) == t.attempt && !taskTerminal(t.state) {
			t.report(m.Io, time.Now(), false)
		}
	}
}

// gone says whether a heartbeat's error means the TaskManager's process is
// gone: its host answered that nothing listens on the port. Anything else
// (a timeout, a partition) waits for the heartbeat timeout.
func gone(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "connection refused")
}

// TaskManagerLost fails the job's tasks on a TaskManager that is gone.
func (jm *JobMaster) TaskManagerLost(tmID, cause string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if _, ok := jm.tms[tmID]; !ok || JobTerminal(jm.state) {
		return
	}
	jm.dropTaskManagerLocked(tmID)
	failed := jm.failTasksOnLocked(tmID)
	if jm.state == JobCreated || jm.state == JobRestarting {
		// Nothing runs there any more: wait for other slots.
		jm.log.Warn("a TaskManager offering slots was lost; waiting for others", "tm", tmID, "cause", cause)
		jm.waitingLocked()
		jm.changedLocked()
		return
	}
	if len(failed) > 0 {
		jm.failoverLocked(failed, "", cause)
	}
	jm.changedLocked()
}

// failTasksOnLocked marks the tasks running on TaskManager tmID failed
// (their TaskManager or worker is gone) and returns them.
func (jm *JobMaster) failTasksOnLocked(tmID string) [][2]int {
	var failed [][2]int
	now := time.Now()
	jm.forEachTaskLocked(nil, func(vi, s int, t *subtask) {
		if t.tm == tmID && !taskTerminal(t.state) && t.state != TaskCreated {
			t.end = now
			t.enter(TaskFailed, now)
			failed = append(failed, [2]int{vi, s})
		}
	})
	return failed
}

// dropTaskManagerLocked forgets a TaskManager the job lost, and its slots.
func (jm *JobMaster) dropTaskManagerLocked(tmID string) {
	kept := jm.slots[:0]
	for _, sl := range jm.slots {
		if sl.tm != tmID {
			kept = append(kept, sl)
		}
	}
	jm.slots = kept
	if c := jm.tms[tmID]; c != nil {
		c.release()
		delete(jm.tms, tmID)
	}
}

// cleanup frees the job's slots on its TaskManagers and at the
// ResourceManager.
func (jm *JobMaster) cleanup() {
	jm.background.Wait()
	jm.mu.Lock()
	conns := jm.tms
	jm.tms = map[string]*tmConn{}
	reason := "job " + jm.state
	jm.mu.Unlock()
	for _, c := range conns {
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = c.client.FreeSlots(fctx, &flinkpb.FreeSlotsRequest{JobId: jm.id, Reason: reason})
		cancel()
		c.release()
	}
	jm.rm.ReleaseJob(jm.id)
}

// offerSlots takes the slots a TaskManager offers, up to the job's need.
func (jm *JobMaster) offerSlots(req *flinkpb.OfferSlotsRequest) ([]int32, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.state != JobCreated && jm.state != JobRestarting && jm.state != JobRunning {
		return nil, nil
	}
	c := jm.tms[req.TaskManagerId]
	if c == nil {
		conn, release, err := jm.conns.Get(req.TaskManagerAddress)
		if err != nil {
			return nil, err
		}
		c = &tmConn{id: req.TaskManagerId, addr: req.TaskManagerAddress, release: release, client: flinkpb.NewTaskExecutorClient(conn), lastOK: time.Now()}
		jm.tms[req.TaskManagerId] = c
	}
	var accepted []int32
	for _, s := range req.Slots {
		if len(jm.slots) >= int(jm.jg.Slots) {
			break
		}
		dup := false
		for _, have := range jm.slots {
			if have.tm == req.TaskManagerId && have.index == s.Index {
				dup = true
			}
		}
		if dup {
			continue
		}
		jm.slots = append(jm.slots, offeredSlot{tm: req.TaskManagerId, tmAddr: req.TaskManagerAddress, dataAddr: req.DataAddress, index: s.Index, alloc: s.AllocationId})
		accepted = append(accepted, s.Index)
	}
	jm.waitingLocked()
	jm.changedLocked()
	return accepted, nil
}

// workerFailed fails the job because a worker could not start or died.
func (jm *JobMaster) workerFailed(tmID, msg string) {
	// The TaskManager freed the job's slots when its worker ended: the
	// ResourceManager gives them (or others) to the job again. It is told
	// without the job's lock, which its own calls into the job take.
	defer jm.rm.SlotsFreed(jm.id, tmID)
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if JobTerminal(jm.state) {
		return
	}
	failed := jm.failTasksOnLocked(tmID)
	jm.dropTaskManagerLocked(tmID)
	// A worker that ends before the job runs fails it (it cannot start the
	// job's program); one of a running job fails the tasks it ran.
	if len(failed) > 0 || jm.state != JobRunning {
		jm.failoverLocked(failed, "", msg)
	}
	jm.changedLocked()
}
