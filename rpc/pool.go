package rpc

import (
	"sync"

	"google.golang.org/grpc"
)

// Pool shares one client connection per address among its users, so that
// a connection's TLS handshake is paid once however many jobs, slots or
// calls use it. A connection closes when its last user releases it: the
// pool holds nothing for an address no one uses.
type Pool struct {
	opts []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*pooled
}

type pooled struct {
	cc   *grpc.ClientConn
	refs int
}

// NewPool makes a pool whose connections are dialed with opts.
func NewPool(opts ...grpc.DialOption) *Pool {
	return &Pool{opts: opts, conns: map[string]*pooled{}}
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
		p.conns[addr] = c
	}
	c.refs++
	var once sync.Once
	return c.cc, func() { once.Do(func() { p.release(addr, c) }) }, nil
}

func (p *Pool) release(addr string, c *pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.refs--; c.refs > 0 {
		return
	}
	if p.conns[addr] == c {
		delete(p.conns, addr)
	}
	_ = c.cc.Close()
}

// Len is the number of addresses with a connection.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
