package state

import (
	"fmt"

	"github.com/loom-project/loom/flinkrt/codec"
)

// handle is a declared state whose contents a checkpoint holds.
type handle interface {
	encode() ([]byte, error)
	decode([]byte) error
}

func encodeMap[M any](m M) ([]byte, error) {
	c, err := codec.For[M]()
	if err != nil {
		return nil, err
	}
	return c.Append(nil, m), nil
}

func decodeMap[M any](b []byte) (M, error) {
	c, err := codec.For[M]()
	if err != nil {
		var zero M
		return zero, err
	}
	m, _, err := c.Decode(b)
	return m, err
}

// withTTL is a state with a TTL in a checkpoint: its entries and when
// each key's expires.
type withTTL[M any, K comparable] struct {
	M       M
	Expires map[K]int64
}

// encodeState encodes a state's map, and its expiry times when it has a
// TTL (expired entries dropped first).
func encodeState[M any, K comparable](m M, ttl *ttlIndex[K], drop func(K)) ([]byte, error) {
	if ttl == nil {
		return encodeMap(m)
	}
	ttl.expireAll(drop)
	return encodeMap(withTTL[M, K]{m, ttl.expires})
}

// decodeState decodes what encodeState wrote into a map, never nil.
func decodeState[M ~map[K]E, K comparable, E any](b []byte, ttl *ttlIndex[K]) (M, error) {
	var m M
	if ttl == nil {
		var err error
		if m, err = decodeMap[M](b); err != nil {
			return nil, err
		}
	} else {
		w, err := decodeMap[withTTL[M, K]](b)
		if err != nil {
			return nil, err
		}
		m = w.M
		ttl.expires = w.Expires
		if ttl.expires == nil {
			ttl.expires = map[K]int64{}
		}
	}
	if m == nil {
		m = M{}
	}
	return m, nil
}

func (s *Value[K, V]) encode() ([]byte, error) { return encodeState(s.m, s.ttl, s.drop) }
func (s *Value[K, V]) decode(b []byte) (err error) {
	s.m, err = decodeState[map[K]V](b, s.ttl)
	return err
}

func (s *List[K, V]) encode() ([]byte, error) { return encodeState(s.m, s.ttl, s.drop) }
func (s *List[K, V]) decode(b []byte) (err error) {
	s.m, err = decodeState[map[K][]V](b, s.ttl)
	return err
}

func (s *Map[K, UK, V]) encode() ([]byte, error) { return encodeState(s.m, s.ttl, s.drop) }
func (s *Map[K, UK, V]) decode(b []byte) (err error) {
	s.m, err = decodeState[map[K]map[UK]V](b, s.ttl)
	return err
}

// absorbInto copies the entries of the keys keep owns from a decoded
// state (m, with its expiry times when it has a TTL) into dst.
func absorbInto[K comparable, E any](dst map[K]E, ttl *ttlIndex[K], m map[K]E, expires map[K]int64, keep func(K) bool) {
	for k, v := range m {
		if !keep(k) {
			continue
		}
		dst[k] = v
		if ttl != nil {
			if e, ok := expires[k]; ok {
				ttl.expires[k] = e
			}
		}
	}
}

// tempTTL is a TTL index to decode another subtask's state with.
func tempTTL[K comparable](ttl *ttlIndex[K]) *ttlIndex[K] {
	if ttl == nil {
		return nil
	}
	return &ttlIndex[K]{ttl: ttl.ttl, now: ttl.now, expires: map[K]int64{}}
}

func expiresOf[K comparable](t *ttlIndex[K]) map[K]int64 {
	if t == nil {
		return nil
	}
	return t.expires
}

func (s *Value[K, V]) absorb(raw []byte, keep func(K) bool) error {
	t := tempTTL(s.ttl)
	m, err := decodeState[map[K]V](raw, t)
	if err == nil {
		absorbInto(s.m, s.ttl, m, expiresOf(t), keep)
	}
	return err
}

func (s *List[K, V]) absorb(raw []byte, keep func(K) bool) error {
	t := tempTTL(s.ttl)
	m, err := decodeState[map[K][]V](raw, t)
	if err == nil {
		absorbInto(s.m, s.ttl, m, expiresOf(t), keep)
	}
	return err
}

func (s *Map[K, UK, V]) absorb(raw []byte, keep func(K) bool) error {
	t := tempTTL(s.ttl)
	m, err := decodeState[map[K]map[UK]V](raw, t)
	if err == nil {
		absorbInto(s.m, s.ttl, m, expiresOf(t), keep)
	}
	return err
}

// RestoreKeyed sets the backend's state from the Snapshots of several
// subtasks, keeping the keys keep owns: each state takes its entries when
// it is declared (or at once, if it already is). A state of theirs that is
// not declared again is dropped at the next snapshot.
func (b *Backend[K]) RestoreKeyed(snapshots [][]byte, keep func(K) bool) error {
	b.keep = keep
	b.parts = map[string][][]byte{}
	for _, data := range snapshots {
		all, err := decodeMap[map[string][]byte](data)
		if err != nil {
			return err
		}
		for name, raw := range all {
			b.parts[name] = append(b.parts[name], raw)
		}
	}
	for name, s := range b.names {
		if parts, ok := b.parts[name]; ok {
			if err := b.absorb(s, parts); err != nil {
				return fmt.Errorf("state %q: %w", name, err)
			}
			delete(b.parts, name)
		}
	}
	return nil
}

// Snapshot encodes every state of the backend, by name. State restored
// but not declared again is kept as it was.
func (b *Backend[K]) Snapshot() ([]byte, error) {
	all := map[string][]byte{}
	for name, raw := range b.restored {
		all[name] = raw
	}
	for name, s := range b.names {
		enc, err := s.(handle).encode()
		if err != nil {
			return nil, fmt.Errorf("state %q: %w", name, err)
		}
		all[name] = enc
	}
	return encodeMap(all)
}

// Restore sets the backend's state from a Snapshot. A state is filled
// when it is declared (or at once, if it already is).
func (b *Backend[K]) Restore(data []byte) error {
	all, err := decodeMap[map[string][]byte](data)
	if err != nil {
		return err
	}
	b.restored = all
	for name, s := range b.names {
		if raw, ok := all[name]; ok {
			if err := s.(handle).decode(raw); err != nil {
				return fmt.Errorf("state %q: %w", name, err)
			}
			delete(b.restored, name)
		}
	}
	return nil
}
