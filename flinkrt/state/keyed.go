// Package state holds the keyed state of operators: typed handles (value,
// list, map) declared by name, each scoped to the key of the record being
// processed. The backend keeps state in Go maps on the heap.
package state

import (
	"fmt"
	"iter"
	"time"
)

// Backend is the keyed state of one operator instance.
type Backend[K comparable] struct {
	current K
	names   map[string]any
	// clock is processing time in epoch ms, for states with a TTL.
	clock func() int64
	// restored is state from a checkpoint not yet declared, by name.
	restored map[string][]byte
	// parts is state from several subtasks' checkpoints, not yet
	// declared, by name: a declared state keeps the keys keep owns.
	parts map[string][][]byte
	keep  func(K) bool
}

// NewBackend makes an empty backend.
func NewBackend[K comparable]() *Backend[K] {
	return &Backend[K]{names: map[string]any{}, clock: func() int64 { return time.Now().UnixMilli() }}
}

// SetClock replaces the processing-time clock states with a TTL read.
func (b *Backend[K]) SetClock(now func() int64) { b.clock = now }

// SetCurrentKey scopes every state handle to k.
func (b *Backend[K]) SetCurrentKey(k K) { b.current = k }

// CurrentKey is the key handles are scoped to.
func (b *Backend[K]) CurrentKey() K { return b.current }

func declare[K comparable, S any](b *Backend[K], name string, make func() S) S {
	if s, ok := b.names[name]; ok {
		typed, ok := s.(S)
		if !ok {
			panic(fmt.Sprintf("state %q is declared twice with different types", name))
		}
		return typed
	}
	s := make()
	b.names[name] = s
	if raw, ok := b.restored[name]; ok {
		if err := any(s).(handle).decode(raw); err != nil {
			panic(fmt.Sprintf("state %q cannot be restored as declared: %v", name, err))
		}
		delete(b.restored, name)
	}
	if parts, ok := b.parts[name]; ok {
		if err := b.absorb(any(s), parts); err != nil {
			panic(fmt.Sprintf("state %q cannot be restored as declared: %v", name, err))
		}
		delete(b.parts, name)
	}
	return s
}

// ClearKey removes k's entries from every declared state.
func (b *Backend[K]) ClearKey(k K) {
	for _, s := range b.names {
		if c, ok := s.(interface{ clearKey(K) }); ok {
			c.clearKey(k)
		}
	}
}

func (s *Value[K, V]) clearKey(k K)   { s.ttl.forget(k); delete(s.m, k) }
func (s *List[K, V]) clearKey(k K)    { s.ttl.forget(k); delete(s.m, k) }
func (s *Map[K, UK, V]) clearKey(k K) { s.ttl.forget(k); delete(s.m, k) }

// keyedHandle is a state that takes the entries of the keys it keeps from
// another subtask's encoding of it.
type keyedHandle[K comparable] interface {
	absorb(raw []byte, keep func(K) bool) error
}

func (b *Backend[K]) absorb(s any, parts [][]byte) error {
	kh, ok := s.(keyedHandle[K])
	if !ok {
		return fmt.Errorf("%T cannot take state from other subtasks", s)
	}
	for _, raw := range parts {
		if err := kh.absorb(raw, b.keep); err != nil {
			return err
		}
	}
	return nil
}

// Value is one value per key.
type Value[K comparable, V any] struct {
	b   *Backend[K]
	m   map[K]V
	ttl *ttlIndex[K]
}

// NewValue declares (or finds) the value state called name.
func NewValue[K comparable, V any](b *Backend[K], name string) *Value[K, V] {
	return NewValueTTL[K, V](b, name, 0)
}

// NewValueTTL declares (or finds) the value state called name, whose
// values expire ttl after they were last written (0: never).
func NewValueTTL[K comparable, V any](b *Backend[K], name string, ttl TTL) *Value[K, V] {
	return declare(b, name, func() *Value[K, V] { return &Value[K, V]{b: b, m: map[K]V{}, ttl: newTTLIndex(b, ttl)} })
}

func (s *Value[K, V]) drop(k K) { delete(s.m, k) }

// Get returns the current key's value and whether it has one.
func (s *Value[K, V]) Get() (V, bool) {
	if !s.ttl.alive(s.b.current, s.drop) {
		var zero V
		return zero, false
	}
	v, ok := s.m[s.b.current]
	return v, ok
}

// Update sets the current key's value.
func (s *Value[K, V]) Update(v V) {
	s.ttl.touch(s.b.current, s.drop)
	s.m[s.b.current] = v
}

// Clear removes the current key's value.
func (s *Value[K, V]) Clear() {
	s.ttl.forget(s.b.current)
	delete(s.m, s.b.current)
}

// Keys is the number of keys holding a value.
func (s *Value[K, V]) Keys() int { return len(s.m) }

// List is a list of values per key.
type List[K comparable, V any] struct {
	b   *Backend[K]
	m   map[K][]V
	ttl *ttlIndex[K]
}

// NewList declares (or finds) the list state called name.
func NewList[K comparable, V any](b *Backend[K], name string) *List[K, V] {
	return NewListTTL[K, V](b, name, 0)
}

// NewListTTL declares (or finds) the list state called name, whose lists
// expire ttl after they were last written (0: never).
func NewListTTL[K comparable, V any](b *Backend[K], name string, ttl TTL) *List[K, V] {
	return declare(b, name, func() *List[K, V] { return &List[K, V]{b: b, m: map[K][]V{}, ttl: newTTLIndex(b, ttl)} })
}

func (s *List[K, V]) drop(k K) { delete(s.m, k) }

// Get returns the current key's list; callers must not keep it past Update.
func (s *List[K, V]) Get() []V {
	if !s.ttl.alive(s.b.current, s.drop) {
		return nil
	}
	return s.m[s.b.current]
}

// Add appends v to the current key's list.
func (s *List[K, V]) Add(v V) {
	if !s.ttl.alive(s.b.current, s.drop) {
		delete(s.m, s.b.current)
	}
	s.ttl.touch(s.b.current, s.drop)
	s.m[s.b.current] = append(s.m[s.b.current], v)
}

// Update replaces the current key's list.
func (s *List[K, V]) Update(vs []V) {
	if len(vs) == 0 {
		s.Clear()
		return
	}
	s.ttl.touch(s.b.current, s.drop)
	s.m[s.b.current] = vs
}

// Clear removes the current key's list.
func (s *List[K, V]) Clear() {
	s.ttl.forget(s.b.current)
	delete(s.m, s.b.current)
}

// Map is a map per key.
type Map[K comparable, UK comparable, V any] struct {
	b   *Backend[K]
	m   map[K]map[UK]V
	ttl *ttlIndex[K]
}

// NewMap declares (or finds) the map state called name.
func NewMap[K comparable, UK comparable, V any](b *Backend[K], name string) *Map[K, UK, V] {
	return NewMapTTL[K, UK, V](b, name, 0)
}

// NewMapTTL declares (or finds) the map state called name, whose maps
// expire ttl after their key last wrote one (0: never).
func NewMapTTL[K comparable, UK comparable, V any](b *Backend[K], name string, ttl TTL) *Map[K, UK, V] {
	return declare(b, name, func() *Map[K, UK, V] { return &Map[K, UK, V]{b: b, m: map[K]map[UK]V{}, ttl: newTTLIndex(b, ttl)} })
}

func (s *Map[K, UK, V]) drop(k K) { delete(s.m, k) }

// Get returns the current key's entry for uk.
func (s *Map[K, UK, V]) Get(uk UK) (V, bool) {
	if !s.ttl.alive(s.b.current, s.drop) {
		var zero V
		return zero, false
	}
	v, ok := s.m[s.b.current][uk]
	return v, ok
}

// Put sets the current key's entry for uk.
func (s *Map[K, UK, V]) Put(uk UK, v V) {
	if !s.ttl.alive(s.b.current, s.drop) {
		delete(s.m, s.b.current)
	}
	s.ttl.touch(s.b.current, s.drop)
	m := s.m[s.b.current]
	if m == nil {
		m = map[UK]V{}
		s.m[s.b.current] = m
	}
	m[uk] = v
}

// Remove deletes the current key's entry for uk.
func (s *Map[K, UK, V]) Remove(uk UK) {
	m := s.m[s.b.current]
	delete(m, uk)
	if len(m) == 0 {
		s.Clear()
	}
}

// All iterates over the current key's entries.
func (s *Map[K, UK, V]) All() iter.Seq2[UK, V] {
	if !s.ttl.alive(s.b.current, s.drop) {
		return func(func(UK, V) bool) {}
	}
	return func(yield func(UK, V) bool) {
		for k, v := range s.m[s.b.current] {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Len is the number of the current key's entries.
func (s *Map[K, UK, V]) Len() int {
	if !s.ttl.alive(s.b.current, s.drop) {
		return 0
	}
	return len(s.m[s.b.current])
}

// Clear removes the current key's map.
func (s *Map[K, UK, V]) Clear() {
	s.ttl.forget(s.b.current)
	delete(s.m, s.b.current)
}

// Reducing keeps one value per key: the reduce, with fn, of every value
// added (Flink's ReducingState).
type Reducing[K comparable, V any] struct {
	v  *Value[K, V]
	fn func(a, b V) V
}

// NewReducing declares (or finds) the reducing state called name.
func NewReducing[K comparable, V any](b *Backend[K], name string, fn func(a, b V) V, ttl TTL) *Reducing[K, V] {
	return &Reducing[K, V]{v: NewValueTTL[K, V](b, name, ttl), fn: fn}
}

// Add folds v into the current key's value.
func (s *Reducing[K, V]) Add(v V) {
	if cur, ok := s.v.Get(); ok {
		v = s.fn(cur, v)
	}
	s.v.Update(v)
}

// Get returns the current key's reduced value and whether it has one.
func (s *Reducing[K, V]) Get() (V, bool) { return s.v.Get() }

// Clear removes the current key's value.
func (s *Reducing[K, V]) Clear() { s.v.Clear() }

// Aggregating keeps an accumulator A per key, into which values I are
// added, and reads as the result O (Flink's AggregatingState).
type Aggregating[K comparable, I, A, O any] struct {
	acc    *Value[K, A]
	create func() A
	add    func(A, I) A
	result func(A) O
}

// NewAggregating declares (or finds) the aggregating state called name.
func NewAggregating[K comparable, I, A, O any](b *Backend[K], name string, create func() A, add func(A, I) A, result func(A) O, ttl TTL) *Aggregating[K, I, A, O] {
	return &Aggregating[K, I, A, O]{acc: NewValueTTL[K, A](b, name, ttl), create: create, add: add, result: result}
}

// Add adds v to the current key's accumulator.
func (s *Aggregating[K, I, A, O]) Add(v I) {
	acc, ok := s.acc.Get()
	if !ok {
		acc = s.create()
	}
	s.acc.Update(s.add(acc, v))
}

// Get returns the current key's result and whether it has one.
func (s *Aggregating[K, I, A, O]) Get() (O, bool) {
	acc, ok := s.acc.Get()
	if !ok {
		var zero O
		return zero, false
	}
	return s.result(acc), true
}

// Clear removes the current key's accumulator.
func (s *Aggregating[K, I, A, O]) Clear() { s.acc.Clear() }
