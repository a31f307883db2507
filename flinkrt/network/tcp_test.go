package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/codec"
)

// listen opens a data server with a deployment trust of its own.
func listen(t testing.TB) *Server {
	t.Helper()
	tr, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", "", tr.ServerTLS(), tr.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

type rec struct {
	Word  string
	Count int64
}

// pipe connects one remote channel into channel 0 of a one-channel gate.
func pipe[T any](t testing.TB, ctx context.Context, credits, batch int) (*Gate[T], *RemoteChannel[T], *Server) {
	t.Helper()
	srv := listen(t)
	gate := NewGate[T](1, credits)
	c := codec.MustFor[T]()
	srv.Register("job/0/0/0", NewReceiver(ctx, gate, 0, credits, batch, c, "producer 0"))
	return gate, NewRemoteChannel(srv.Dial, srv.Addr(), "job/0/0/0", batch, c), srv
}

func TestRemoteChannelCarriesRecordsWatermarksAndEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate, out, _ := pipe[rec](t, ctx, 2, 16)

	const n = 1000
	go func() {
		for i := 0; i < n; {
			b, err := out.Take(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			for j := 0; j < 16 && i < n; j, i = j+1, i+1 {
				ts := int64(i)
				if i < 500 {
					ts = NoTime
				}
				b.Add(rec{Word: fmt.Sprint("w", i), Count: int64(i)}, ts)
			}
			if err := out.Send(ctx, b); err != nil {
				t.Error(err)
				return
			}
		}
		b, _ := out.Take(ctx)
		b.Kind, b.Watermark = Watermark, 12345
		_ = out.Send(ctx, b)
		b, _ = out.Take(ctx)
		b.Kind = EndOfPartition
		_ = out.Send(ctx, b)
		out.Close()
	}()

	var got []rec
	var times []int64
	var wm int64
	for ended := false; !ended; {
		select {
		case b := <-gate.C():
			switch b.Kind {
			case Data:
				got = append(got, b.Records...)
				times = append(times, b.Times...)
			case Watermark:
				wm = b.Watermark
			case EndOfPartition:
				ended = true
			case Failure:
				t.Fatal(b.Err)
			}
			b.Recycle()
		case <-ctx.Done():
			t.Fatal("timed out")
		}
	}
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, r := range got {
		want := int64(i)
		if i < 500 {
			want = NoTime
		}
		if r.Count != int64(i) || r.Word != fmt.Sprint("w", i) || times[i] != want {
			t.Fatalf("record %d = %+v at %d", i, r, times[i])
		}
	}
	if wm != 12345 {
		t.Fatalf("watermark %d, want 12345", wm)
	}
}

// A consumer that does not recycle its batches holds its producer at the
// credits it granted.
func TestRemoteChannelBlocksWithoutCredit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const credits = 3
	gate, out, _ := pipe[int64](t, ctx, credits, 4)

	sent := make(chan int, 100)
	sendCtx, stopSending := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			b, err := out.Take(sendCtx)
			if err != nil {
				return
			}
			b.Add(int64(i), NoTime)
			if err := out.Send(sendCtx, b); err != nil {
				return
			}
			sent <- i
		}
	}()
	var held []*Batch[int64]
	for len(held) < credits {
		select {
		case b := <-gate.C():
			held = append(held, b)
		case <-ctx.Done():
			t.Fatal("timed out")
		}
	}
	// With every credit held, the producer sent exactly credits frames;
	// one more cannot go until a batch is recycled.
	for i := 0; i < credits; i++ {
		<-sent
	}
	select {
	case i := <-sent:
		t.Fatalf("frame %d was sent without a credit", i)
	case b := <-gate.C():
		t.Fatalf("the gate got a frame beyond the credits: %v", b.Records)
	case <-time.After(100 * time.Millisecond):
	}
	held[0].Recycle()
	select {
	case <-sent:
	case <-ctx.Done():
		t.Fatal("a recycled batch did not give the producer a credit")
	}
	stopSending()
	wg.Wait()
}

// A producer that goes away mid-stream fails the consumer with an error
// that names it.
func TestRemoteChannelBreakFailsConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate, out, _ := pipe[string](t, ctx, 2, 4)
	b, err := out.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Add("one", NoTime)
	if err := out.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	out.conn.Close()
	for {
		select {
		case b := <-gate.C():
			if b.Kind == Failure {
				if !strings.Contains(b.Err.Error(), "producer 0") {
					t.Fatalf("error %q does not name the producer", b.Err)
				}
				return
			}
			b.Recycle()
		case <-ctx.Done():
			t.Fatal("no failure reached the gate")
		}
	}
}

func TestServerDropsBadHello(t *testing.T) {
	srv := listen(t)
	out := NewRemoteChannel(srv.Dial, srv.Addr(), "nobody/0/0/0", 4, codec.MustFor[int64]())
	srv.mu.Lock()
	srv.wait = 50 * time.Millisecond
	srv.mu.Unlock()
	ctx := context.Background()
	b, err := out.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Add(1, NoTime)
	err = out.Send(ctx, b)
	if err == nil || errors.Is(err, ErrCanceled) {
		t.Fatalf("send to an unregistered channel: %v, want a broken connection", err)
	}
}

// BenchmarkRemoteChannel measures bytes/s of 100-byte records between two
// ends of a channel over loopback.
func BenchmarkRemoteChannel(b *testing.B) {
	ctx := context.Background()
	gate, out, _ := pipe[string](b, ctx, DefaultCredits, DefaultBatchSize)
	word := strings.Repeat("x", benchRecord-1)
	done := make(chan int64)
	go func() {
		var bytes int64
		for {
			bt := <-gate.C()
			if bt.Kind == EndOfPartition {
				done <- bytes
				return
			}
			for _, r := range bt.Records {
				bytes += int64(len(r)) + 1
			}
			bt.Recycle()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; {
		bt, _ := out.Take(ctx)
		for j := 0; j < DefaultBatchSize && i < b.N; j, i = j+1, i+1 {
			bt.Add(word, NoTime)
		}
		if err := out.Send(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	bt, _ := out.Take(ctx)
	bt.Kind = EndOfPartition
	_ = out.Send(ctx, bt)
	bytes := <-done
	b.StopTimer()
	out.Close()
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// benchRecord is the size of a record in BenchmarkRemoteChannel, with its
// length prefix.
var benchRecord = 1000

// A data port takes records only from its own deployment: a plaintext
// producer and one with another deployment's secret reach no receiver,
// and the producer's send fails.
func TestDataPortRefusesOutsiders(t *testing.T) {
	srv := listen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate := NewGate[int64](1, 4)
	srv.Register("job/0/0/0", NewReceiver(ctx, gate, 0, 4, 4, codec.MustFor[int64](), "producer 0"))

	plain := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	stranger := listen(t) // another deployment's server, to dial with its trust
	for name, dial := range map[string]Dialer{"plaintext": plain, "another secret": stranger.Dial} {
		out := NewRemoteChannel(dial, srv.Addr(), "job/0/0/0", 4, codec.MustFor[int64]())
		err := func() error {
			b, err := out.Take(ctx)
			if err != nil {
				return err
			}
			b.Add(42, NoTime)
			if err := out.Send(ctx, b); err != nil {
				return err
			}
			// A write may be buffered before the peer's refusal is seen.
			b, err = out.Take(ctx)
			if err != nil {
				return err
			}
			b.Add(43, NoTime)
			return out.Send(ctx, b)
		}()
		if err == nil {
			t.Errorf("%s: a producer outside the deployment sent records", name)
		}
	}
	select {
	case b := <-gate.C():
		t.Fatalf("a receiver got a batch from outside the deployment: %+v", b)
	default:
	}
}

// FuzzDecodeFrame feeds a consumer's frame decoder what a producer may
// send: it never panics, and a frame it takes has as many event times as
// records.
func FuzzDecodeFrame(f *testing.F) {
	c := codec.MustFor[rec]()
	var enc []byte
	enc = c.Append(enc, rec{Word: "loom", Count: 3})
	frame := append([]byte{byte(Data), 1, 0, 0, 0, timesNone}, enc...)
	f.Add(frame)
	f.Add(append([]byte{byte(Data), 1, 0, 0, 0, timesAll, 1, 2, 3, 4, 5, 6, 7, 8}, enc...))
	f.Add([]byte{byte(Watermark), 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{byte(Barrier), 9, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{byte(EndOfPartition)})
	f.Add([]byte{byte(Data), 0xff, 0xff, 0xff, 0xff, timesAll})
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) == 0 || len(p) > maxFrame {
			return // receive refuses these before decoding
		}
		b := &Batch[rec]{}
		if err := decodeFrame(p, b, c); err == nil && len(b.Records) != len(b.Times) {
			t.Fatalf("%d records with %d times", len(b.Records), len(b.Times))
		}
	})
}
