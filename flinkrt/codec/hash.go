package codec

import (
	"math"
	"reflect"
)

// Hasher returns a function that hashes values of K the same way in every
// process: the key of a keyed stream is hashed into a key group, and every
// producer must send a key to the same consumer. Strings and integers hash
// directly; other types hash their encoding.
func Hasher[K any]() (func(K) uint64, error) {
	var h any
	switch reflect.TypeFor[K]() {
	case reflect.TypeFor[string]():
		h = func(k string) uint64 { return HashString(k) }
	case reflect.TypeFor[int]():
		h = func(k int) uint64 { return mix(uint64(k)) }
	case reflect.TypeFor[int64]():
		h = func(k int64) uint64 { return mix(uint64(k)) }
	case reflect.TypeFor[int32]():
		h = func(k int32) uint64 { return mix(uint64(k)) }
	case reflect.TypeFor[uint64]():
		h = func(k uint64) uint64 { return mix(k) }
	case reflect.TypeFor[float64]():
		h = func(k float64) uint64 { return mix(math.Float64bits(k)) }
	}
	if h != nil {
		return h.(func(K) uint64), nil
	}
	c, err := For[K]()
	if err != nil {
		return nil, err
	}
	return func(k K) uint64 {
		var buf [64]byte
		return HashBytes(c.Append(buf[:0], k))
	}, nil
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// HashString is FNV-1a over s, finished with a 64-bit mixer so that nearby
// strings spread over key groups.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix(h)
}

// HashBytes is HashString over a byte slice.
func HashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix(h)
}

// mix is MurmurHash3's 64-bit finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
