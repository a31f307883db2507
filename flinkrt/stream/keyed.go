package stream

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/task"
)

// KeyedStream is a stream partitioned by key: every record of a key goes
// to the same subtask, which holds that key's state.
type KeyedStream[K comparable, T any] struct {
	s   DataStream[T]
	key func(T) K
}

// KeyBy partitions s by key: keys are hashed into key groups and key
// groups spread over the next operator's subtasks, as Flink does.
func KeyBy[K comparable, T any](s DataStream[T], key func(T) K) KeyedStream[K, T] {
	hash, err := codec.Hasher[K]()
	if err != nil {
		s.env.fail(fmt.Errorf("KeyBy: the key type cannot be hashed: %w", err))
	}
	s.part = task.Partitioning{Kind: task.Hash, KeyHash: func(v T) uint64 { return hash(key(v)) }}
	s.node = nil
	return KeyedStream[K, T]{s: s, key: key}
}

// Env is the environment the stream belongs to.
func (k KeyedStream[K, T]) Env() *Env { return k.s.env }

// Reduce combines each record with the key's previous result and emits the
// new result: a running aggregate per key.
func Reduce[K comparable, T any](k KeyedStream[K, T], name string, fn func(acc, v T) T) DataStream[T] {
	return keyedState(add[T, T](k.s, name, "Keyed Reduce", func(out any) task.Instance {
		return task.Instance{Input: task.Output[T](&reduceOp[K, T]{key: k.key, fn: fn, acc: map[K]T{}, out: out.(task.Output[T])})}
	}))
}

// keyedState marks a stream's operator as holding state by key.
func keyedState[T any](s DataStream[T]) DataStream[T] {
	s.node.KeyedState = true
	return s
}

// ownedKeys says which keys of type K a subtask owns.
func ownedKeys[K comparable](g task.KeyGroups) (func(K) bool, error) {
	hash, err := codec.Hasher[K]()
	if err != nil {
		return nil, err
	}
	return func(k K) bool { return g.Owns(hash(k)) }, nil
}

type reduceOp[K comparable, T any] struct {
	key func(T) K
	fn  func(acc, v T) T
	acc map[K]T
	out task.Output[T]
}

func (o *reduceOp[K, T]) Collect(v T, ts int64) {
	k := o.key(v)
	if acc, ok := o.acc[k]; ok {
		v = o.fn(acc, v)
	}
	o.acc[k] = v
	o.out.Collect(v, ts)
}

func (o *reduceOp[K, T]) Watermark(wm int64) { o.out.Watermark(wm) }
func (o *reduceOp[K, T]) Idle()              { task.MarkIdle(o.out) }

// SnapshotState implements task.Snapshotter: every key's accumulator.
func (o *reduceOp[K, T]) SnapshotState(int64) ([]byte, error) {
	c, err := codec.For[map[K]T]()
	if err != nil {
		return nil, err
	}
	return c.Append(nil, o.acc), nil
}

// RestoreState implements task.Snapshotter.
func (o *reduceOp[K, T]) RestoreState(b []byte) error {
	c, err := codec.For[map[K]T]()
	if err != nil {
		return err
	}
	acc, _, err := c.Decode(b)
	if err != nil {
		return err
	}
	if acc == nil {
		acc = map[K]T{}
	}
	o.acc = acc
	return nil
}

// RestoreKeyed implements task.KeyedRestorer: the accumulators of the
// keys this subtask owns, from every subtask's checkpoint.
func (o *reduceOp[K, T]) RestoreKeyed(states [][]byte, g task.KeyGroups) error {
	owns, err := ownedKeys[K](g)
	if err != nil {
		return err
	}
	c, err := codec.For[map[K]T]()
	if err != nil {
		return err
	}
	o.acc = map[K]T{}
	for _, b := range states {
		acc, _, err := c.Decode(b)
		if err != nil {
			return err
		}
		for k, v := range acc {
			if owns(k) {
				o.acc[k] = v
			}
		}
	}
	return nil
}

// Sum keeps a running sum of the numeric field named field per key; the
// other fields are those of the key's first record, as Flink's sum. field
// "" sums a stream of numbers.
func Sum[K comparable, T any](k KeyedStream[K, T], field string) DataStream[T] {
	return aggregate(k, "Sum", field, func(f fieldOf[T], acc, v T) T { f.add(&acc, &v); return acc })
}

// Min keeps the smallest value of field per key in the key's first record.
func Min[K comparable, T any](k KeyedStream[K, T], field string) DataStream[T] {
	return aggregate(k, "Min", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&v, &acc) {
			f.copy(&acc, &v)
		}
		return acc
	})
}

// Max keeps the largest value of field per key in the key's first record.
func Max[K comparable, T any](k KeyedStream[K, T], field string) DataStream[T] {
	return aggregate(k, "Max", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&acc, &v) {
			f.copy(&acc, &v)
		}
		return acc
	})
}

// MinBy emits, per key, the record with the smallest field so far (the
// earliest of equals).
func MinBy[K comparable, T any](k KeyedStream[K, T], field string) DataStream[T] {
	return aggregate(k, "MinBy", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&v, &acc) {
			return v
		}
		return acc
	})
}

// MaxBy emits, per key, the record with the largest field so far (the
// earliest of equals).
func MaxBy[K comparable, T any](k KeyedStream[K, T], field string) DataStream[T] {
	return aggregate(k, "MaxBy", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&acc, &v) {
			return v
		}
		return acc
	})
}

func aggregate[K comparable, T any](k KeyedStream[K, T], what, field string, fn func(fieldOf[T], T, T) T) DataStream[T] {
	f, err := newFieldOf[T](field)
	if err != nil {
		k.s.env.fail(fmt.Errorf("%s: %w", what, err))
	}
	return Reduce(k, "Keyed Aggregation", func(acc, v T) T { return fn(f, acc, v) })
}

// fieldOf reads and writes one numeric field of T through its offset.
type fieldOf[T any] struct {
	off  uintptr
	size uintptr
	kind reflect.Kind
}

func newFieldOf[T any](name string) (fieldOf[T], error) {
	t := reflect.TypeFor[T]()
	if name == "" {
		if !numeric(t.Kind()) {
			return fieldOf[T]{}, fmt.Errorf("%s is not a number; name a numeric field", t)
		}
		return fieldOf[T]{0, t.Size(), t.Kind()}, nil
	}
	if t.Kind() != reflect.Struct {
		return fieldOf[T]{}, fmt.Errorf("%s is not a struct, so it has no field %q", t, name)
	}
	sf, ok := t.FieldByName(name)
	if !ok || len(sf.Index) != 1 {
		return fieldOf[T]{}, fmt.Errorf("%s has no field %q", t, name)
	}
	if !numeric(sf.Type.Kind()) {
		return fieldOf[T]{}, fmt.Errorf("field %s.%s is a %s, not a number", t, name, sf.Type)
	}
	return fieldOf[T]{sf.Offset, sf.Type.Size(), sf.Type.Kind()}, nil
}

func numeric(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func (f fieldOf[T]) ptr(v *T) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(v), f.off) }

func (f fieldOf[T]) add(acc, v *T) {
	a, b := f.ptr(acc), f.ptr(v)
	switch f.kind {
	case reflect.Int:
		*(*int)(a) += *(*int)(b)
	case reflect.Int8:
		*(*int8)(a) += *(*int8)(b)
	case reflect.Int16:
		*(*int16)(a) += *(*int16)(b)
	case reflect.Int32:
		*(*int32)(a) += *(*int32)(b)
	case reflect.Int64:
		*(*int64)(a) += *(*int64)(b)
	case reflect.Uint:
		*(*uint)(a) += *(*uint)(b)
	case reflect.Uint8:
		*(*uint8)(a) += *(*uint8)(b)
	case reflect.Uint16:
		*(*uint16)(a) += *(*uint16)(b)
	case reflect.Uint32:
		*(*uint32)(a) += *(*uint32)(b)
	case reflect.Uint64:
		*(*uint64)(a) += *(*uint64)(b)
	case reflect.Float32:
		*(*float32)(a) += *(*float32)(b)
	case reflect.Float64:
		*(*float64)(a) += *(*float64)(b)
	}
}

func (f fieldOf[T]) less(x, y *T) bool {
	a, b := f.ptr(x), f.ptr(y)
	switch f.kind {
	case reflect.Int:
		return *(*int)(a) < *(*int)(b)
	case reflect.Int8:
		return *(*int8)(a) < *(*int8)(b)
	case reflect.Int16:
		return *(*int16)(a) < *(*int16)(b)
	case reflect.Int32:
		return *(*int32)(a) < *(*int32)(b)
	case reflect.Int64:
		return *(*int64)(a) < *(*int64)(b)
	case reflect.Uint:
		return *(*uint)(a) < *(*uint)(b)
	case reflect.Uint8:
		return *(*uint8)(a) < *(*uint8)(b)
	case reflect.Uint16:
		return *(*uint16)(a) < *(*uint16)(b)
	case reflect.Uint32:
		return *(*uint32)(a) < *(*uint32)(b)
	case reflect.Uint64:
		return *(*uint64)(a) < *(*uint64)(b)
	case reflect.Float32:
		return *(*float32)(a) < *(*float32)(b)
	case reflect.Float64:
		return *(*float64)(a) < *(*float64)(b)
	}
	return false
}

func (f fieldOf[T]) copy(dst, src *T) {
	copy(unsafe.Slice((*byte)(f.ptr(dst)), f.size), unsafe.Slice((*byte)(f.ptr(src)), f.size))
}
