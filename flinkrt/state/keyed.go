// Package state holds the keyed state of operators: typed handles (value,
// list, map) declared by name, each scoped to the key of the record being
// processed. The backend keeps state in Go maps on the heap.
package state

import (
	"fmt"
	"iter"
)

// Backend is the keyed state of one operator instance.
type Backend[K comparable] struct {
	current K
	names   map[string]any
	// restored is state from a checkpoint not yet declared, by name.
	restored map[string][]byte
}

// NewBackend makes an empty backend.
func NewBackend[K comparable]() *Backend[K] {
	return &Backend[K]{names: map[string]any{}}
}

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
	return s
}

// Value is one value per key.
type Value[K comparable, V any] struct {
	b *Backend[K]
	m map[K]V
}

// NewValue declares (or finds) the value state called name.
func NewValue[K comparable, V any](b *Backend[K], name string) *Value[K, V] {
	return declare(b, name, func() *Value[K, V] { return &Value[K, V]{b: b, m: map[K]V{}} })
}

// Get returns the current key's value and whether it has one.
func (s *Value[K, V]) Get() (V, bool) {
	v, ok := s.m[s.b.current]
	return v, ok
}

// Update sets the current key's value.
func (s *Value[K, V]) Update(v V) { s.m[s.b.current] = v }

// Clear removes the current key's value.
func (s *Value[K, V]) Clear() { delete(s.m, s.b.current) }

// Keys is the number of keys holding a value.
func (s *Value[K, V]) Keys() int { return len(s.m) }

// List is a list of values per key.
type List[K comparable, V any] struct {
	b *Backend[K]
	m map[K][]V
}

// NewList declares (or finds) the list state called name.
func NewList[K comparable, V any](b *Backend[K], name string) *List[K, V] {
	return declare(b, name, func() *List[K, V] { return &List[K, V]{b: b, m: map[K][]V{}} })
}

// Get returns the current key's list; callers must not keep it past Update.
func (s *List[K, V]) Get() []V { return s.m[s.b.current] }

// Add appends v to the current key's list.
func (s *List[K, V]) Add(v V) { s.m[s.b.current] = append(s.m[s.b.current], v) }

// Update replaces the current key's list.
func (s *List[K, V]) Update(vs []V) {
	if len(vs) == 0 {
		delete(s.m, s.b.current)
		return
	}
	s.m[s.b.current] = vs
}

// Clear removes the current key's list.
func (s *List[K, V]) Clear() { delete(s.m, s.b.current) }

// Map is a map per key.
type Map[K comparable, UK comparable, V any] struct {
	b *Backend[K]
	m map[K]map[UK]V
}

// NewMap declares (or finds) the map state called name.
func NewMap[K comparable, UK comparable, V any](b *Backend[K], name string) *Map[K, UK, V] {
	return declare(b, name, func() *Map[K, UK, V] { return &Map[K, UK, V]{b: b, m: map[K]map[UK]V{}} })
}

// Get returns the current key's entry for uk.
func (s *Map[K, UK, V]) Get(uk UK) (V, bool) {
	v, ok := s.m[s.b.current][uk]
	return v, ok
}

// Put sets the current key's entry for uk.
func (s *Map[K, UK, V]) Put(uk UK, v V) {
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
		delete(s.m, s.b.current)
	}
}

// All iterates over the current key's entries.
func (s *Map[K, UK, V]) All() iter.Seq2[UK, V] {
	return func(yield func(UK, V) bool) {
		for k, v := range s.m[s.b.current] {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Len is the number of the current key's entries.
func (s *Map[K, UK, V]) Len() int { return len(s.m[s.b.current]) }

// Clear removes the current key's map.
func (s *Map[K, UK, V]) Clear() { delete(s.m, s.b.current) }
