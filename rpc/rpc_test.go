package rpc

import (
	"os"
	"testing"
	"time"
)

func TestAdvertised(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct{ listen, host, want string }{
		{"127.0.0.1:6123", "", "127.0.0.1:6123"},
		{"0.0.0.0:6123", "node7", "node7:6123"},
		{":6123", "node7", "node7:6123"},
		{"[::]:6123", "", host + ":6123"},
		{"example.org:1", "node7", "example.org:1"},
	} {
		if got := Advertised(c.listen, c.host); got != c.want {
			t.Errorf("Advertised(%q, %q) = %q, want %q", c.listen, c.host, got, c.want)
		}
	}
}

// A pool shares one connection per address among its users and closes it
// when the last lets go: after every user has released, it holds
// nothing.
func TestPoolSharesAndReleases(t *testing.T) {
	p := NewPool(0, DialOptions(nil)...)
	a, relA, err := p.Get("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	b, relB, _ := p.Get("127.0.0.1:1")
	_, relC, _ := p.Get("127.0.0.1:2")
	if a != b || p.Len() != 2 {
		t.Fatalf("two users of one address got %p and %p; %d addresses", a, b, p.Len())
	}
	relA()
	relA() // a second release of the same use is a no-op
	if p.Len() != 2 || b.GetState().String() == "SHUTDOWN" {
		t.Fatalf("released while in use: %d addresses, state %s", p.Len(), b.GetState())
	}
	relB()
	relC()
	if p.Len() != 0 || a.GetState().String() != "SHUTDOWN" {
		t.Fatalf("after every release: %d addresses, state %s", p.Len(), a.GetState())
	}
}

// A lingering pool keeps a released connection for the next user, and
// closes it once no one has come for the linger.
func TestPoolLingers(t *testing.T) {
	p := NewPool(50*time.Millisecond, DialOptions(nil)...)
	a, rel, _ := p.Get("127.0.0.1:1")
	rel()
	b, rel, _ := p.Get("127.0.0.1:1")
	if a != b {
		t.Fatal("a connection released a moment ago was not reused")
	}
	rel()
	deadline := time.Now().Add(10 * time.Second)
	for p.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an idle connection was kept past its linger")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a.GetState().String() != "SHUTDOWN" {
		t.Fatalf("the idle connection is %s, want closed", a.GetState())
	}
	c, rel, _ := p.Get("127.0.0.1:2")
	p.Close()
	if c.GetState().String() == "SHUTDOWN" {
		t.Fatal("Close closed a connection in use")
	}
	rel()
	if c.GetState().String() != "SHUTDOWN" || p.Len() != 0 {
		t.Fatalf("after Close and the last release: %s, %d held", c.GetState(), p.Len())
	}
}

// GetOpen shares a connection the pool holds and dials none.
func TestPoolGetOpenDialsNothing(t *testing.T) {
	p := NewPool(time.Hour, DialOptions(nil)...)
	defer p.Close()
	if _, _, ok := p.GetOpen("127.0.0.1:1"); ok || p.Len() != 0 {
		t.Fatalf("GetOpen of an address the pool does not hold: ok %v, %d held", ok, p.Len())
	}
	a, rel, _ := p.Get("127.0.0.1:1")
	rel()
	b, relB, ok := p.GetOpen("127.0.0.1:1")
	if !ok || a != b {
		t.Fatal("GetOpen did not share the lingering connection")
	}
	relB()
	if p.Len() != 1 {
		t.Fatalf("%d held, want the one lingering", p.Len())
	}
}
