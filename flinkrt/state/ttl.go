package state

import (
	"time"
)

// TTL makes a state's entries expire: a key's value (list, map) lives
// for TTL after it was last written, as Flink's StateTtlConfig with
// UpdateType.OnCreateAndWrite and StateVisibility.NeverReturnExpired, in
// processing time. An expired entry reads as absent; it is removed when
// read, a few more are checked at every write (Flink's incremental
// cleanup), and none is kept in a checkpoint. Deviation: a map state's
// entries expire with their key's last write, not one by one.
type TTL time.Duration

// sweepPerWrite is how many other keys each write checks for expiry.
const sweepPerWrite = 2

// ttlIndex is when each key's entry of one state expires.
type ttlIndex[K comparable] struct {
	ttl     int64 // ms
	now     func() int64
	expires map[K]int64
}

func newTTLIndex[K comparable](b *Backend[K], ttl TTL) *ttlIndex[K] {
	if ttl <= 0 {
		return nil
	}
	return &ttlIndex[K]{ttl: time.Duration(ttl).Milliseconds(), now: b.clock, expires: map[K]int64{}}
}

// alive reports whether k's entry has not expired; an expired one is
// dropped with drop.
func (t *ttlIndex[K]) alive(k K, drop func(K)) bool {
	if t == nil {
		return true
	}
	e, ok := t.expires[k]
	if !ok || e > t.now() {
		return true
	}
	delete(t.expires, k)
	drop(k)
	return false
}

// touch restarts k's time to live, and checks a few other keys.
func (t *ttlIndex[K]) touch(k K, drop func(K)) {
	if t == nil {
		return
	}
	now := t.now()
	n := 0
	for other, e := range t.expires {
		if n == sweepPerWrite {
			break
		}
		n++
		if e <= now && other != k {
			delete(t.expires, other)
			drop(other)
		}
	}
	t.expires[k] = now + t.ttl
}

func (t *ttlIndex[K]) forget(k K) {
	if t != nil {
		delete(t.expires, k)
	}
}

// expireAll drops every expired entry, before a snapshot.
func (t *ttlIndex[K]) expireAll(drop func(K)) {
	if t == nil {
		return
	}
	now := t.now()
	for k, e := range t.expires {
		if e <= now {
			delete(t.expires, k)
			drop(k)
		}
	}
}
