package codec

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type point struct {
	X, Y  int32
	Label string
}

type event struct {
	CarID    int
	Speed    int
	Distance float64
	Time     int64
	Ok       bool
	Tags     []string
	Raw      []byte
	At       *point
	Counts   map[string]uint16
	Grid     [2]point
	Small    int8
	Ratio    float32
	unexport uint
}

type list struct {
	V    int
	Next *list
}

func roundTrip[T any](t *testing.T, v T) {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatalf("For[%T]: %v", v, err)
	}
	buf := c.Append([]byte{0xAA}, v)
	got, n, err := c.Decode(buf[1:])
	if err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	if n != len(buf)-1 {
		t.Fatalf("decode %T took %d bytes of %d", v, n, len(buf)-1)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip of %T: got %+v, want %+v", v, got, v)
	}
	// Every strict prefix is too short, never a panic.
	for i := 0; i < len(buf)-1; i++ {
		if _, _, err := c.Decode(buf[1 : 1+i]); err == nil {
			t.Fatalf("decode of %d-byte prefix of %T succeeded", i, v)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	roundTrip(t, "héllo")
	roundTrip(t, "")
	roundTrip(t, int64(-1<<40))
	roundTrip(t, 42)
	roundTrip(t, 3.25)
	roundTrip(t, []byte("bytes"))
	roundTrip(t, uint32(7))
	roundTrip(t, true)
	roundTrip(t, point{1, -2, "p"})
	roundTrip(t, event{
		CarID: 3, Speed: 120, Distance: 1234.5, Time: 1e12, Ok: true,
		Tags: []string{"a", "b"}, Raw: []byte{1, 2}, At: &point{3, 4, "x"},
		Counts: map[string]uint16{"k": 9, "j": 1}, Grid: [2]point{{1, 1, "a"}, {2, 2, "b"}},
		Small: -3, Ratio: 0.5, unexport: 11,
	})
	roundTrip(t, event{})
	roundTrip(t, &list{1, &list{2, nil}})
	roundTrip(t, []point{{1, 2, "a"}})
}

func TestUnsupportedTypeNamesTheField(t *testing.T) {
	type bad struct {
		Name string
		Fn   func()
	}
	_, err := For[bad]()
	if err == nil || !strings.Contains(err.Error(), "field Fn") || !strings.Contains(err.Error(), "codec.Register") {
		t.Fatalf("err = %v, want one naming field Fn and codec.Register", err)
	}
	if _, err := For[any](); err == nil {
		t.Fatal("an interface type got a codec")
	}
}

type upper string

type upperCodec struct{}

func (upperCodec) Append(dst []byte, v upper) []byte {
	return append(append(dst, byte(len(v))), strings.ToUpper(string(v))...)
}
func (upperCodec) Decode(src []byte) (upper, int, error) {
	n := int(src[0])
	return upper(src[1 : 1+n]), 1 + n, nil
}

func TestRegisteredCodecWins(t *testing.T) {
	Register[upper](upperCodec{})
	c := MustFor[upper]()
	v, _, _ := c.Decode(c.Append(nil, "abc"))
	if v != "ABC" {
		t.Fatalf("registered codec not used: got %q", v)
	}
}

func TestMapEncodingIsDeterministic(t *testing.T) {
	c := MustFor[map[string]int]()
	m := map[string]int{}
	for i := 0; i < 100; i++ {
		m[strings.Repeat("k", i%7)+string(rune('a'+i%26))] = i
	}
	first := string(c.Append(nil, m))
	for i := 0; i < 20; i++ {
		if string(c.Append(nil, m)) != first {
			t.Fatal("equal maps encoded differently")
		}
	}
}

func TestHasherAgreesWithItself(t *testing.T) {
	hs, _ := Hasher[string]()
	if w := "word"; hs(w) != HashString("word") || hs(w) == hs("work") {
		t.Fatal("string hasher is not the string hash")
	}
	hp, err := Hasher[point]()
	if err != nil {
		t.Fatal(err)
	}
	a, b := point{1, 2, "a"}, point{1, 2, "a"}
	if hp(a) != hp(b) || hp(a) == hp(point{1, 2, "b"}) {
		t.Fatal("struct hasher does not follow the value")
	}
}

func BenchmarkStructRoundTrip(b *testing.B) {
	type car struct {
		CarID    int
		Speed    int
		Distance float64
		Time     int64
	}
	c := MustFor[car]()
	v := car{1, 100, 2000.5, 1700000000000}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = c.Append(buf[:0], v)
		if _, _, err := c.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

type firstUseA struct {
	N    int64
	Tags []string
}
type firstUseB struct{ Pairs [][2]int64 }
type firstUseC struct {
	M    map[string]int
	Next *firstUseC
}

// The first uses of a type, from several goroutines at once (subtasks
// restoring their state in one worker), each get a working codec: none
// sees one still being built.
func TestFirstUseFromManyGoroutines(t *testing.T) {
	check := func(name string, f func() error) {
		errs := make(chan error, 16)
		start := make(chan struct{})
		for i := 0; i < 16; i++ {
			go func() {
				<-start
				defer func() {
					if p := recover(); p != nil {
						errs <- fmt.Errorf("%s: %v", name, p)
					}
				}()
				errs <- f()
			}()
		}
		close(start)
		for i := 0; i < 16; i++ {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	check("firstUseA", func() error {
		c := MustFor[firstUseA]()
		_, _, err := c.Decode(c.Append(nil, firstUseA{N: 7, Tags: []string{"x"}}))
		return err
	})
	check("firstUseB", func() error {
		c := MustFor[firstUseB]()
		_, _, err := c.Decode(c.Append(nil, firstUseB{Pairs: [][2]int64{{1, 2}}}))
		return err
	})
	check("firstUseC", func() error {
		c := MustFor[firstUseC]()
		_, _, err := c.Decode(c.Append(nil, firstUseC{M: map[string]int{"a": 1}, Next: &firstUseC{}}))
		return err
	})
}
