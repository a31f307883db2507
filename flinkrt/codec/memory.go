package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
	"unsafe"
)

// raw encodes and decodes a value of one type in place, through a pointer
// to its memory. Built once per type by rawFor; structs, arrays, slices,
// maps and pointers compose the raws of their parts.
type raw struct {
	enc func(dst []byte, p unsafe.Pointer) []byte
	dec func(src []byte, p unsafe.Pointer) (int, error)
}

type memCodec[T any] struct{ r *raw }

func (c memCodec[T]) Append(dst []byte, v T) []byte {
	return c.r.enc(dst, unsafe.Pointer(&v))
}

func (c memCodec[T]) Decode(src []byte) (T, int, error) {
	var v T
	n, err := c.r.dec(src, unsafe.Pointer(&v))
	return v, n, err
}

type sliceHeader struct {
	data unsafe.Pointer
	len  int
	cap  int
}

// buildMu serializes building memory codecs. A raw being built sits in
// building, where only the goroutine building it (a recursive type finds
// its own placeholder there) sees it; rawCache gets it once complete.
var (
	buildMu  sync.Mutex
	building map[reflect.Type]*raw
)

// rawOf returns the raw of t, building it (and the raws of its parts) if
// no goroutine has yet.
func rawOf(t reflect.Type) (*raw, error) {
	mu.RLock()
	r, ok := rawCache[t]
	mu.RUnlock()
	if ok {
		return r, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	building = map[reflect.Type]*raw{}
	defer func() { building = nil }()
	r, err := rawFor(t, nil)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	for bt, br := range building {
		rawCache[bt] = br
	}
	mu.Unlock()
	return r, nil
}

// rawFor builds the raw of t, with buildMu held. path names the field
// being built, for errors.
func rawFor(t reflect.Type, path []string) (*raw, error) {
	mu.RLock()
	r, ok := rawCache[t]
	mu.RUnlock()
	if ok {
		return r, nil
	}
	if r, ok := building[t]; ok {
		return r, nil
	}
	r = &raw{}
	building[t] = r
	built, err := buildRaw(t, path)
	if err != nil {
		delete(building, t)
		return nil, err
	}
	*r = *built
	return r, nil
}

func buildRaw(t reflect.Type, path []string) (*raw, error) {
	switch t.Kind() {
	case reflect.Bool:
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				if *(*bool)(p) {
					return append(dst, 1)
				}
				return append(dst, 0)
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				if len(src) < 1 {
					return 0, ErrShort
				}
				*(*bool)(p) = src[0] != 0
				return 1, nil
			},
		}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		size := t.Size()
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				return binary.AppendVarint(dst, loadInt(p, size))
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				v, k := binary.Varint(src)
				if k <= 0 {
					return 0, ErrShort
				}
				storeInt(p, size, v)
				return k, nil
			},
		}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		size := t.Size()
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				return binary.AppendUvarint(dst, loadUint(p, size))
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				v, k := binary.Uvarint(src)
				if k <= 0 {
					return 0, ErrShort
				}
				storeUint(p, size, v)
				return k, nil
			},
		}, nil
	case reflect.Float32:
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				return binary.LittleEndian.AppendUint32(dst, math.Float32bits(*(*float32)(p)))
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				if len(src) < 4 {
					return 0, ErrShort
				}
				*(*float32)(p) = math.Float32frombits(binary.LittleEndian.Uint32(src))
				return 4, nil
			},
		}, nil
	case reflect.Float64:
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				return binary.LittleEndian.AppendUint64(dst, math.Float64bits(*(*float64)(p)))
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				if len(src) < 8 {
					return 0, ErrShort
				}
				*(*float64)(p) = math.Float64frombits(binary.LittleEndian.Uint64(src))
				return 8, nil
			},
		}, nil
	case reflect.String:
		return &raw{
			enc: func(dst []byte, p unsafe.Pointer) []byte {
				s := *(*string)(p)
				dst = binary.AppendUvarint(dst, uint64(len(s)))
				return append(dst, s...)
			},
			dec: func(src []byte, p unsafe.Pointer) (int, error) {
				n, k := binary.Uvarint(src)
				if k <= 0 || uint64(len(src)-k) < n {
					return 0, ErrShort
				}
				*(*string)(p) = string(src[k : k+int(n)])
				return k + int(n), nil
			},
		}, nil
	case reflect.Struct:
		return structRaw(t, path)
	case reflect.Array:
		return arrayRaw(t, path)
	case reflect.Slice:
		return sliceRaw(t, path)
	case reflect.Pointer:
		return pointerRaw(t, path)
	case reflect.Map:
		return mapRaw(t, path)
	}
	where := describe(t)
	if len(path) > 0 {
		where = fmt.Sprintf("field %s (%s)", joinPath(path), where)
	}
	return nil, fmt.Errorf("codec: cannot encode %s of kind %s: use plain data fields, or register a codec with codec.Register", where, t.Kind())
}

func joinPath(path []string) string {
	var b bytes.Buffer
	for i, p := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func loadInt(p unsafe.Pointer, size uintptr) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(p))
	case 2:
		return int64(*(*int16)(p))
	case 4:
		return int64(*(*int32)(p))
	}
	return *(*int64)(p)
}

func storeInt(p unsafe.Pointer, size uintptr, v int64) {
	switch size {
	case 1:
		*(*int8)(p) = int8(v)
	case 2:
		*(*int16)(p) = int16(v)
	case 4:
		*(*int32)(p) = int32(v)
	default:
		*(*int64)(p) = v
	}
}

func loadUint(p unsafe.Pointer, size uintptr) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}

func storeUint(p unsafe.Pointer, size uintptr, v uint64) {
	switch size {
	case 1:
		*(*uint8)(p) = uint8(v)
	case 2:
		*(*uint16)(p) = uint16(v)
	case 4:
		*(*uint32)(p) = uint32(v)
	default:
		*(*uint64)(p) = v
	}
}

func structRaw(t reflect.Type, path []string) (*raw, error) {
	type field struct {
		off uintptr
		r   *raw
	}
	var fields []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == "_" {
			continue
		}
		r, err := rawFor(f.Type, append(path[:len(path):len(path)], f.Name))
		if err != nil {
			return nil, err
		}
		fields = append(fields, field{f.Offset, r})
	}
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			for _, f := range fields {
				dst = f.r.enc(dst, unsafe.Add(p, f.off))
			}
			return dst
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			n := 0
			for _, f := range fields {
				k, err := f.r.dec(src[n:], unsafe.Add(p, f.off))
				if err != nil {
					return 0, err
				}
				n += k
			}
			return n, nil
		},
	}, nil
}

func arrayRaw(t reflect.Type, path []string) (*raw, error) {
	elem, err := rawFor(t.Elem(), path)
	if err != nil {
		return nil, err
	}
	size, count := t.Elem().Size(), t.Len()
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			for i := 0; i < count; i++ {
				dst = elem.enc(dst, unsafe.Add(p, uintptr(i)*size))
			}
			return dst
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			n := 0
			for i := 0; i < count; i++ {
				k, err := elem.dec(src[n:], unsafe.Add(p, uintptr(i)*size))
				if err != nil {
					return 0, err
				}
				n += k
			}
			return n, nil
		},
	}, nil
}

func sliceRaw(t reflect.Type, path []string) (*raw, error) {
	elem, err := rawFor(t.Elem(), path)
	if err != nil {
		return nil, err
	}
	if t.Elem().Kind() == reflect.Uint8 {
		return bytesRaw(t), nil
	}
	size := t.Elem().Size()
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			h := (*sliceHeader)(p)
			if h.data == nil {
				return append(dst, 0)
			}
			dst = binary.AppendUvarint(dst, uint64(h.len)+1)
			for i := 0; i < h.len; i++ {
				dst = elem.enc(dst, unsafe.Add(h.data, uintptr(i)*size))
			}
			return dst
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			l, n := binary.Uvarint(src)
			if n <= 0 {
				return 0, ErrShort
			}
			if l == 0 {
				*(*sliceHeader)(p) = sliceHeader{}
				return n, nil
			}
			count := int(l - 1)
			if count > len(src)-n && size > 0 {
				// Every element takes at least one byte; a longer count is corrupt.
				return 0, ErrShort
			}
			s := reflect.MakeSlice(t, count, count)
			data := s.UnsafePointer()
			for i := 0; i < count; i++ {
				k, err := elem.dec(src[n:], unsafe.Add(data, uintptr(i)*size))
				if err != nil {
					return 0, err
				}
				n += k
			}
			*(*sliceHeader)(p) = sliceHeader{data: data, len: count, cap: count}
			return n, nil
		},
	}, nil
}

// bytesRaw copies a byte slice's contents in one go.
func bytesRaw(t reflect.Type) *raw {
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			h := (*sliceHeader)(p)
			if h.data == nil {
				return append(dst, 0)
			}
			dst = binary.AppendUvarint(dst, uint64(h.len)+1)
			return append(dst, unsafe.Slice((*byte)(h.data), h.len)...)
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			l, n := binary.Uvarint(src)
			if n <= 0 {
				return 0, ErrShort
			}
			if l == 0 {
				*(*sliceHeader)(p) = sliceHeader{}
				return n, nil
			}
			count := int(l - 1)
			if count > len(src)-n {
				return 0, ErrShort
			}
			s := reflect.MakeSlice(t, count, count)
			copy(unsafe.Slice((*byte)(s.UnsafePointer()), count), src[n:n+count])
			*(*sliceHeader)(p) = sliceHeader{data: s.UnsafePointer(), len: count, cap: count}
			return n + count, nil
		},
	}
}

func pointerRaw(t reflect.Type, path []string) (*raw, error) {
	elem, err := rawFor(t.Elem(), path)
	if err != nil {
		return nil, err
	}
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			q := *(*unsafe.Pointer)(p)
			if q == nil {
				return append(dst, 0)
			}
			return elem.enc(append(dst, 1), q)
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			if len(src) < 1 {
				return 0, ErrShort
			}
			if src[0] == 0 {
				*(*unsafe.Pointer)(p) = nil
				return 1, nil
			}
			q := reflect.New(t.Elem()).UnsafePointer()
			k, err := elem.dec(src[1:], q)
			if err != nil {
				return 0, err
			}
			*(*unsafe.Pointer)(p) = q
			return k + 1, nil
		},
	}, nil
}

// mapRaw encodes entries in the order of their encoded keys, so equal maps
// encode equally.
func mapRaw(t reflect.Type, path []string) (*raw, error) {
	kr, err := rawFor(t.Key(), path)
	if err != nil {
		return nil, err
	}
	vr, err := rawFor(t.Elem(), path)
	if err != nil {
		return nil, err
	}
	return &raw{
		enc: func(dst []byte, p unsafe.Pointer) []byte {
			m := reflect.NewAt(t, p).Elem()
			if m.IsNil() {
				return append(dst, 0)
			}
			type entry struct{ k, v []byte }
			entries := make([]entry, 0, m.Len())
			it := m.MapRange()
			for it.Next() {
				k := reflect.New(t.Key())
				k.Elem().Set(it.Key())
				v := reflect.New(t.Elem())
				v.Elem().Set(it.Value())
				entries = append(entries, entry{kr.enc(nil, k.UnsafePointer()), vr.enc(nil, v.UnsafePointer())})
			}
			sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i].k, entries[j].k) < 0 })
			dst = binary.AppendUvarint(dst, uint64(len(entries))+1)
			for _, e := range entries {
				dst = append(append(dst, e.k...), e.v...)
			}
			return dst
		},
		dec: func(src []byte, p unsafe.Pointer) (int, error) {
			l, n := binary.Uvarint(src)
			if n <= 0 {
				return 0, ErrShort
			}
			m := reflect.NewAt(t, p).Elem()
			if l == 0 {
				m.SetZero()
				return n, nil
			}
			count := int(l - 1)
			if count > len(src)-n {
				return 0, ErrShort
			}
			mv := reflect.MakeMapWithSize(t, count)
			for i := 0; i < count; i++ {
				k := reflect.New(t.Key())
				c, err := kr.dec(src[n:], k.UnsafePointer())
				if err != nil {
					return 0, err
				}
				n += c
				v := reflect.New(t.Elem())
				c, err = vr.dec(src[n:], v.UnsafePointer())
				if err != nil {
					return 0, err
				}
				n += c
				mv.SetMapIndex(k.Elem(), v.Elem())
			}
			m.Set(mv)
			return n, nil
		},
	}, nil
}
