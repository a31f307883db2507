package state

import (
	"fmt"

	"loom/flinkrt/codec"
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

func (s *Value[K, V]) encode() ([]byte, error) { return encodeMap(s.m) }
func (s *Value[K, V]) decode(b []byte) (err error) {
	if s.m, err = decodeMap[map[K]V](b); err == nil && s.m == nil {
		s.m = map[K]V{}
	}
	return err
}

func (s *List[K, V]) encode() ([]byte, error) { return encodeMap(s.m) }
func (s *List[K, V]) decode(b []byte) (err error) {
	if s.m, err = decodeMap[map[K][]V](b); err == nil && s.m == nil {
		s.m = map[K][]V{}
	}
	return err
}

func (s *Map[K, UK, V]) encode() ([]byte, error) { return encodeMap(s.m) }
func (s *Map[K, UK, V]) decode(b []byte) (err error) {
	if s.m, err = decodeMap[map[K]map[UK]V](b); err == nil && s.m == nil {
		s.m = map[K]map[UK]V{}
	}
	return err
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
