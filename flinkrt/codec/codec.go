// Package codec encodes the records that travel between a job's workers and
// the keys that are hashed into key groups.
//
// A Codec[T] appends a value's encoding to a byte slice and decodes one
// value from the front of a slice. Built-in codecs cover booleans, every
// integer and float kind, strings and byte slices; a struct, array, slice,
// map or pointer type gets a codec built once by reflection that works on
// the value's memory directly. A hand-written codec registered with
// Register takes precedence for its type. Encodings are deterministic, so
// equal keys hash equally in every process.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
)

// Codec encodes and decodes values of one type.
type Codec[T any] interface {
	// Append appends v's encoding to dst and returns the extended slice.
	Append(dst []byte, v T) []byte
	// Decode decodes one value from the front of src and returns it with
	// the number of bytes it took.
	Decode(src []byte) (T, int, error)
}

// ErrShort is returned when a slice ends inside a value.
var ErrShort = errors.New("codec: input ends inside a value")

var (
	mu       sync.RWMutex
	custom   = map[reflect.Type]any{}  // reflect.Type -> Codec[T]
	built    = map[reflect.Type]any{}  // reflect.Type -> Codec[T], cache of For
	rawCache = map[reflect.Type]*raw{} // reflect.Type -> memory codec
)

// Register makes c the codec of T in this process. Register it before the
// job's graph is built, in every process that runs the job (an init
// function does that).
func Register[T any](c Codec[T]) {
	t := reflect.TypeFor[T]()
	mu.Lock()
	defer mu.Unlock()
	custom[t] = c
	delete(built, t)
}

// For returns the codec of T, or an error naming the field that no codec
// can encode (a func, a channel, an interface).
func For[T any]() (Codec[T], error) {
	t := reflect.TypeFor[T]()
	mu.RLock()
	if c, ok := custom[t]; ok {
		mu.RUnlock()
		return c.(Codec[T]), nil
	}
	if c, ok := built[t]; ok {
		mu.RUnlock()
		return c.(Codec[T]), nil
	}
	mu.RUnlock()

	c, err := build[T](t)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	built[t] = c
	mu.Unlock()
	return c, nil
}

// MustFor is For for types known to be encodable; it panics otherwise.
func MustFor[T any]() Codec[T] {
	c, err := For[T]()
	if err != nil {
		panic(err)
	}
	return c
}

func build[T any](t reflect.Type) (Codec[T], error) {
	var c any
	switch t.Kind() {
	case reflect.String:
		if t == reflect.TypeFor[string]() {
			c = stringCodec{}
		}
	case reflect.Int64:
		if t == reflect.TypeFor[int64]() {
			c = int64Codec{}
		}
	case reflect.Int:
		if t == reflect.TypeFor[int]() {
			c = intCodec{}
		}
	case reflect.Float64:
		if t == reflect.TypeFor[float64]() {
			c = float64Codec{}
		}
	case reflect.Slice:
		if t == reflect.TypeFor[[]byte]() {
			c = bytesCodec{}
		}
	}
	if c != nil {
		return c.(Codec[T]), nil
	}
	r, err := rawOf(t)
	if err != nil {
		return nil, err
	}
	return memCodec[T]{r}, nil
}

// ------------------------------------------------------------- primitives

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func (stringCodec) Decode(src []byte) (string, int, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || uint64(len(src)-k) < n {
		return "", 0, ErrShort
	}
	return string(src[k : k+int(n)]), k + int(n), nil
}

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func (bytesCodec) Decode(src []byte) ([]byte, int, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || uint64(len(src)-k) < n {
		return nil, 0, ErrShort
	}
	return append([]byte(nil), src[k:k+int(n)]...), k + int(n), nil
}

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

func (int64Codec) Decode(src []byte) (int64, int, error) {
	v, k := binary.Varint(src)
	if k <= 0 {
		return 0, 0, ErrShort
	}
	return v, k, nil
}

type intCodec struct{}

func (intCodec) Append(dst []byte, v int) []byte { return binary.AppendVarint(dst, int64(v)) }

func (intCodec) Decode(src []byte) (int, int, error) {
	v, k := binary.Varint(src)
	if k <= 0 {
		return 0, 0, ErrShort
	}
	return int(v), k, nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

func (float64Codec) Decode(src []byte) (float64, int, error) {
	if len(src) < 8 {
		return 0, 0, ErrShort
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(src)), 8, nil
}

// describe names a type for error messages.
func describe(t reflect.Type) string {
	if t.Name() != "" && t.PkgPath() != "" {
		return fmt.Sprintf("%s.%s", t.PkgPath(), t.Name())
	}
	return t.String()
}
