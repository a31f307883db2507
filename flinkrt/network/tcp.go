package network

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-project/loom/flinkrt/codec"
)

// A channel between workers is one TCP connection, opened by the producer
// to the consumer's worker, in mutual TLS with the deployment's trust
// (package auth): a data port takes no byte from anyone outside the
// deployment. The TLS handshake is bounded by the hello's deadline. Over
// it the producer first sends a hello: the magic
// "LOOM", a uint16 length and the channel's key. From then on it sends
// frames and the consumer sends credits.
//
// A frame is a uint32 length followed by that many bytes: a kind byte,
// then for Data a uint32 record count, a byte saying whether event times
// follow (count int64s), and the records in their codec's encoding; for
// Watermark an int64; for Barrier the checkpoint id, an int64; for
// EndOfPartition and Idle nothing. A credit is a uint32:
// the number of further frames the consumer has room for. All integers are
// little-endian.
//
// A producer writes one frame per batch with one write call, so the
// buffer timeout that sends partly filled batches also bounds how long a
// record waits on the network.

const magic = "LOOM"

// maxFrame bounds a frame a consumer accepts, so a broken or hostile peer
// cannot make it allocate without limit.
const maxFrame = 256 << 20

// maxRecords bounds the records of one frame.
const maxRecords = 1 << 20

// maxCredits bounds the credits a producer holds.
const maxCredits = 1 << 12

// Receiver takes over an accepted connection whose hello named its key and
// serves it until the channel ends.
type Receiver func(conn net.Conn, r *bufio.Reader)

// Server accepts the data connections of one worker and hands each to the
// Receiver registered under its key.
type Server struct {
	ln        net.Listener
	advertise string
	client    *tls.Config

	mu        sync.Mutex
	wait      time.Duration // for a connection's receiver
	receivers map[string]Receiver
	changed   chan struct{} // closed and replaced when receivers change
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// Listen opens a data server on addr ("host:0" for any port). Its address
// is advertised with host in place of the listener's own, when host is
// set. It serves with server and dials other workers (Dial) with client,
// both the deployment's.
func Listen(addr, host string, server, client *tls.Config) (*Server, error) {
	if server == nil || client == nil {
		return nil, errors.New("a data server needs its deployment's TLS configurations")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for data connections: %w", err)
	}
	ln = tls.NewListener(ln, server)
	adv := ln.Addr().String()
	if host != "" {
		_, port, _ := net.SplitHostPort(adv)
		adv = net.JoinHostPort(host, port)
	}
	s := &Server{
		ln: ln, advertise: adv, client: client, wait: 30 * time.Second,
		receivers: map[string]Receiver{}, changed: make(chan struct{}), conns: map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address producers connect to.
func (s *Server) Addr() string { return s.advertise }

// Dialer opens a data connection to another worker.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Dial is the Dialer of this server's deployment: TLS with its client
// configuration, the handshake done before it returns.
func (s *Server) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: s.client}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.DialContext(hctx, "tcp", addr)
}

// Register makes r serve the connection that names key. A connection may
// arrive before its receiver is registered; it waits for it.
func (s *Server) Register(key string, r Receiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.receivers[key] = r
	close(s.changed)
	s.changed = make(chan struct{})
}

// Unregister forgets receivers no connection took: those of a deployment
// that ended.
func (s *Server) Unregister(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.receivers, k)
	}
}

// Close stops accepting, closes every connection and waits for their
// receivers to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn)
	}
}

func (s *Server) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	br := bufio.NewReaderSize(conn, 64<<10)
	s.mu.Lock()
	wait := s.wait
	s.mu.Unlock()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var hello [6]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil || string(hello[:4]) != magic {
		return
	}
	key := make([]byte, binary.LittleEndian.Uint16(hello[4:]))
	if _, err := io.ReadFull(br, key); err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		r, ok := s.receivers[string(key)]
		if ok {
			delete(s.receivers, string(key))
		}
		changed, closed := s.changed, s.closed
		s.mu.Unlock()
		if ok {
			r(conn, br)
			return
		}
		if closed {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			return
		}
	}
}

const (
	timesNone byte = 0
	timesAll  byte = 1
)

// NewReceiver serves a remote producer's channel into channel index of
// gate: it grants credits for the batches it holds, decodes each frame
// into one and delivers it. A connection that breaks before the end of
// the partition fails the consumer with an error naming from.
func NewReceiver[T any](ctx context.Context, gate *Gate[T], index, credits, batchSize int, c codec.Codec[T], from string) Receiver {
	return func(conn net.Conn, br *bufio.Reader) {
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		free := make(chan *Batch[T], credits)
		reserved := make(chan *Batch[T], credits)
		for i := 0; i < credits; i++ {
			free <- &Batch[T]{Records: make([]T, 0, batchSize), Times: make([]int64, 0, batchSize), Channel: index, free: free}
		}
		done := make(chan struct{})
		granter := make(chan struct{})
		go func() {
			defer close(granter)
			var buf [4]byte
			for {
				var n uint32
				select {
				case b := <-free:
					reserved <- b
					n = 1
				case <-done:
					return
				}
			more:
				for {
					select {
					case b := <-free:
						reserved <- b
						n++
					default:
						break more
					}
				}
				binary.LittleEndian.PutUint32(buf[:], n)
				if _, err := conn.Write(buf[:]); err != nil {
					return
				}
			}
		}()
		err := receive(ctx, br, gate, reserved, c)
		close(done)
		conn.Close()
		<-granter
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("connection from %s broke: %w (its worker or TaskManager may be gone)", from, err)
			_ = gate.Deliver(ctx, &Batch[T]{Kind: Failure, Err: err, Channel: index})
		}
	}
}

// receive reads frames until the end of the partition.
func receive[T any](ctx context.Context, br *bufio.Reader, gate *Gate[T], reserved chan *Batch[T], c codec.Codec[T]) error {
	var hdr [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n == 0 || n > maxFrame {
			return fmt.Errorf("bad frame length %d", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		var b *Batch[T]
		select {
		case b = <-reserved:
		default:
			return errors.New("the producer sent a frame without a credit")
		}
		if err := decodeFrame(buf, b, c); err != nil {
			return err
		}
		b.Bytes = int64(len(buf)) + 4
		end := b.Kind == EndOfPartition // b is the consumer's once delivered
		if err := gate.Deliver(ctx, b); err != nil {
			return err
		}
		if end {
			return nil
		}
	}
}

func decodeFrame[T any](p []byte, b *Batch[T], c codec.Codec[T]) error {
	b.Kind = Kind(p[0])
	p = p[1:]
	switch b.Kind {
	case Data:
		if len(p) < 5 {
			return codec.ErrShort
		}
		n := int(binary.LittleEndian.Uint32(p))
		times := p[4]
		p = p[5:]
		if n > maxRecords || times == timesAll && n*8 > len(p) {
			return fmt.Errorf("bad frame: %d records in %d bytes", n, len(p))
		}
		if times == timesAll {
			for i := 0; i < n; i++ {
				b.Times = append(b.Times, int64(binary.LittleEndian.Uint64(p[i*8:])))
			}
			p = p[n*8:]
		} else {
			for i := 0; i < n; i++ {
				b.Times = append(b.Times, NoTime)
			}
		}
		for i := 0; i < n; i++ {
			v, k, err := c.Decode(p)
			if err != nil {
				return fmt.Errorf("decoding record %d of %d: %w", i, n, err)
			}
			b.Records = append(b.Records, v)
			p = p[k:]
		}
	case Watermark:
		if len(p) < 8 {
			return codec.ErrShort
		}
		b.Watermark = int64(binary.LittleEndian.Uint64(p))
	case Barrier:
		if len(p) < 8 {
			return codec.ErrShort
		}
		b.Checkpoint = int64(binary.LittleEndian.Uint64(p))
	case EndOfPartition, Idle:
	default:
		return fmt.Errorf("unknown frame kind %d", b.Kind)
	}
	return nil
}

// RemoteChannel is the producing end of a channel to a subtask in another
// worker. It connects on first use.
type RemoteChannel[T any] struct {
	dial      Dialer
	addr, key string
	codec     codec.Codec[T]
	batch     *Batch[T]
	buf       []byte

	conn       net.Conn
	stop       func() bool
	credits    chan struct{}
	readerDone chan struct{}
	readErr    error
	// sent counts the bytes written, for the producer's metrics.
	sent atomic.Int64
}

// BytesSent is how many bytes of frames the channel has written.
func (c *RemoteChannel[T]) BytesSent() int64 { return c.sent.Load() }

// NewRemoteChannel makes the producing end of the channel key at the
// worker serving addr, which dial reaches.
func NewRemoteChannel[T any](dial Dialer, addr, key string, batchSize int, c codec.Codec[T]) *RemoteChannel[T] {
	return &RemoteChannel[T]{
		dial: dial, addr: addr, key: key, codec: c,
		batch: &Batch[T]{Records: make([]T, 0, batchSize), Times: make([]int64, 0, batchSize)},
	}
}

func (c *RemoteChannel[T]) connect(ctx context.Context) error {
	conn, err := c.dial(ctx, c.addr)
	if err != nil {
		if ctx.Err() != nil {
			return ErrCanceled
		}
		return fmt.Errorf("connecting to the consumer's worker at %s: %w", c.addr, err)
	}
	hello := append([]byte(magic), 0, 0)
	binary.LittleEndian.PutUint16(hello[4:], uint16(len(c.key)))
	hello = append(hello, c.key...)
	if _, err := conn.Write(hello); err != nil {
		conn.Close()
		return fmt.Errorf("connecting to the consumer's worker at %s: %w", c.addr, err)
	}
	c.conn = conn
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	c.credits = make(chan struct{}, maxCredits)
	c.readerDone = make(chan struct{})
	go c.readCredits()
	return nil
}

func (c *RemoteChannel[T]) readCredits() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.conn, 256)
	var buf [4]byte
	for {
		if _, err := io.ReadFull(br, buf[:]); err != nil {
			c.readErr = err
			return
		}
		n := binary.LittleEndian.Uint32(buf[:])
		for i := uint32(0); i < n; i++ {
			select {
			case c.credits <- struct{}{}:
			default:
				c.readErr = errors.New("the consumer granted more credits than allowed")
				return
			}
		}
	}
}

// Take implements ChannelOut. The channel has one batch: Send writes it
// out before returning, so it is free again.
func (c *RemoteChannel[T]) Take(ctx context.Context) (*Batch[T], error) {
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return nil, err
		}
	}
	return c.batch, nil
}

// Send implements ChannelOut: it waits for a credit and writes the batch
// as one frame.
func (c *RemoteChannel[T]) Send(ctx context.Context, b *Batch[T]) error {
	c.buf = appendFrame(c.buf[:0], b, c.codec)
	b.Recycle()
	select {
	case <-c.credits:
	default:
		select {
		case <-c.credits:
		case <-c.readerDone:
			if ctx.Err() != nil {
				return ErrCanceled
			}
			return fmt.Errorf("the connection to %s broke: %v (the consuming worker or its TaskManager may be gone)", c.addr, c.readErr)
		case <-ctx.Done():
			return ErrCanceled
		}
	}
	if _, err := c.conn.Write(c.buf); err != nil {
		if ctx.Err() != nil {
			return ErrCanceled
		}
		return fmt.Errorf("sending to %s: %w (the consuming worker or its TaskManager may be gone)", c.addr, err)
	}
	c.sent.Add(int64(len(c.buf)))
	return nil
}

// Close implements ChannelOut: after the end of the partition it waits,
// briefly, for the consumer to close its end, so nothing sent is lost to
// a reset.
func (c *RemoteChannel[T]) Close() {
	if c.conn == nil {
		return
	}
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	<-c.readerDone
	c.stop()
	c.conn.Close()
}

func appendFrame[T any](dst []byte, b *Batch[T], c codec.Codec[T]) []byte {
	dst = append(dst, 0, 0, 0, 0, byte(b.Kind))
	switch b.Kind {
	case Data:
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b.Records)))
		timed := false
		for _, t := range b.Times {
			if t != NoTime {
				timed = true
				break
			}
		}
		if timed {
			dst = append(dst, timesAll)
			for _, t := range b.Times {
				dst = binary.LittleEndian.AppendUint64(dst, uint64(t))
			}
		} else {
			dst = append(dst, timesNone)
		}
		for i := range b.Records {
			dst = c.Append(dst, b.Records[i])
		}
	case Watermark:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(b.Watermark))
	case Barrier:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(b.Checkpoint))
	}
	binary.LittleEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}
