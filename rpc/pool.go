package rpc

import (
	"sync"
	"time"

	"google.golang.org/grpc"
)

// Pool shares one client connection per address among its users, so that
// a connection's TLS handshake is paid once however many jobs, slots or
// calls use it. A connection closes linger after its last user released
// it, unless a user comes back meanwhile: the pool holds nothing for an
// address no one has used for that long, whatever comes and goes.
type Pool struct {
	opts   []grpc.DialOption
	linger time.Duration

	mu     sync.Mutex
	conns  map[string]*pooled
	closed bool
}

type pooled struct {
	cc    *grpc.ClientConn
	refs  int
	timer *time.Timer // closes the idle connection
}

// Linger is how long a pool keeps a connection no one uses unless told
// otherwise: long enough that jobs, heartbeats and container starts in a
// row share one.
const Linger = time.Minute

// NewPool makes a pool whose connections are dialed with opts and kept
// linger after their last use.
func NewPool(linger time.Duration, opts ...grpc.DialOption) *Pool {
	return &Pool{opts: opts, linger: linger, conns: map[string]*pooled{}}
}

// Get returns the connection to addr, dialing it if there is none, and
// the function that releases it; call release exactly once.
func (p *Pool) Get(addr string) (cc *grpc.ClientConn, release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[addr]
	if c == nil {
		cc, err := grpc.NewClient(addr, p.opts...)
		if err != nil {
			return nil, nil, err
		}
		c = &pooled{cc: cc}
		if !p.closed {
			p.conns[addr] = c
		}
	}
	return c.cc, p.take(addr, c), nil
}

// GetOpen is Get for a connection the pool already holds: false, and
// nothing to release, when it holds none for addr.
func (p *Pool) GetOpen(addr string) (cc *grpc.ClientConn, release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[addr]
	if c == nil {
		return nil, nil, false
	}
	return c.cc, p.take(addr, c), true
}

// take counts a user of c and returns its release; p.mu is held.
func (p *Pool) take(addr string, c *pooled) func() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.refs++
	var once sync.Once
	return func() { once.Do(func() { p.release(addr, c) }) }
}

func (p *Pool) release(addr string, c *pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.refs--; c.refs > 0 {
		return
	}
	if p.linger <= 0 || p.closed || p.conns[addr] != c {
		p.drop(addr, c)
		return
	}
	c.timer = time.AfterFunc(p.linger, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if c.refs == 0 {
			p.drop(addr, c)
		}
	})
}

// drop closes c and forgets it; p.mu is held.
func (p *Pool) drop(addr string, c *pooled) {
	if p.conns[addr] == c {
		delete(p.conns, addr)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	_ = c.cc.Close()
}

// Close closes every idle connection, and each one in use when its last
// user releases it.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, c := range p.conns {
		if c.refs == 0 {
			p.drop(addr, c)
		} else {
			delete(p.conns, addr)
		}
	}
}

// Len is the number of addresses with a connection.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
