package rm

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/tlsutil"
)

// tlsStreamLayer carries raft over mutual TLS: only a ResourceManager
// replica of this cluster (a server certificate signed by the cluster CA)
// gets a connection through, so no one else can append, vote or install
// a snapshot.
type tlsStreamLayer struct {
	ln        net.Listener
	server    *tls.Config
	advertise net.Addr
	client    *tls.Config
}

// handshakeTimeout bounds how long a peer may take to prove who it is.
const handshakeTimeout = 10 * time.Second

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// newTLSStreamLayer listens on addr. The handshake runs lazily in raft's
// per-connection goroutine, so a peer that stalls it holds up only itself.
func newTLSStreamLayer(addr string, b *tlsutil.Bundle) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	adv, err := net.ResolveTCPAddr("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %s: needs a host others can dial, not an unspecified one", addr)
	}
	return &tlsStreamLayer{
		ln:        ln,
		server:    b.ServerConfig(tlsutil.KindServer),
		advertise: adv,
		client:    b.ClientConfig(tlsutil.ServerName),
	}, nil
}

func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, l.server)}, nil
}

func (l *tlsStreamLayer) Close() error   { return l.ln.Close() }
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), l.client)
}

// handshakeConn finishes the TLS handshake, within handshakeTimeout,
// before the first byte is read or written.
type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *handshakeConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
