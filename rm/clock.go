package rm

import "time"

// Clock is the time the RM's liveness, expiry, grace and retention work
// by: the real one, or a fake that tests move (DESIGN.md §8). Raft and
// the waits of long polls keep the real time.
type Clock interface {
	Now() time.Time
	// Tick delivers the time every d until stop is called.
	Tick(d time.Duration) (c <-chan time.Time, stop func())
}

// realClock is the machine's time.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Tick(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// nowMS is the clock's time in unix milliseconds, as commands carry it.
func (s *Server) nowMS() int64 { return s.clock.Now().UnixMilli() }
