package rm

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// onDiskServer is a test RM with raft on disk, over its TLS transport.
func onDiskServer(t *testing.T, pki *tlstest.PKI, dir, raftAddr, addr string) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	cfg.Addr = addr
	cfg.HTTPAddr = ""
	cfg.DataDir = dir
	cfg.RaftAddr = raftAddr
	cfg.RaftTimeout = 50 * time.Millisecond
	cfg.TLS, cfg.CA = pki.Bundle(tlstest.Server("rm")), pki.CA
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freeAddr is a free loopback address whose port is below the host's
// ephemeral range, so that no connection's source port (which the kernel
// hands out from that range, to this and every other test process) takes
// it between this check and the test's bind.
func freeAddr(t testing.TB) string {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				lo = n
			}
		}
	}
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(lo-10000)))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// forger is a raft peer dialing the RM's raft port with identity id.
func forger(t *testing.T, id *tlsutil.Bundle) *raft.NetworkTransport {
	t.Helper()
	stream, err := newTLSStreamLayer("127.0.0.1:0", id)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(stream, 1, 2*time.Second, nil)
	t.Cleanup(func() { trans.Close() })
	return trans
}

func forgedAppend(s *Server, data []byte) *raft.AppendEntriesRequest {
	stats := s.raft.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	lastTerm, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
	last := s.raft.LastIndex()
	return &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("forger"), Addr: []byte("127.0.0.1:1")},
		Term:         term + 1,
		PrevLogEntry: last, PrevLogTerm: lastTerm,
		Entries:           []*raft.Log{{Index: last + 1, Term: term + 1, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: last + 1,
	}
}

func TestRaftPortTakesOnlyServersOfTheCluster(t *testing.T) {
	pki := tlstest.New(t)
	raftAddr := freeAddr(t)
	s := onDiskServer(t, pki, t.TempDir(), raftAddr, "127.0.0.1:0")
	defer s.Shutdown()
	waitUntil(t, "leadership", s.IsLeader)
	term := s.raft.Stats()["term"]
	for name, id := range map[string]*tlsutil.Bundle{
		"a user of the cluster":  pki.Bundle(tlstest.User("mallory", AdminGroup)),
		"a node of the cluster":  pki.Bundle(tlstest.Node("n1")),
		"a server of another CA": tlstest.New(t).Bundle(tlstest.Server("rm")),
	} {
		t.Run(name, func(t *testing.T) {
			var resp raft.AppendEntriesResponse
			err := forger(t, id).AppendEntries("rm", raft.ServerAddress(raftAddr), forgedAppend(s, []byte{byte(CmdBumpEpoch), '{', '}'}), &resp)
			if err == nil {
				t.Fatalf("the forged AppendEntries was taken: %+v", resp)
			}
		})
	}
	if got := s.raft.Stats()["term"]; got != term || !s.IsLeader() {
		t.Fatalf("term %s (was %s), leader %v after refused peers", got, term, s.IsLeader())
	}
	// A plaintext peer gets nothing either.
	c, err := net.Dial("tcp", raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte{0, 0x81, 0})
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	c.Close()
	if n > 0 && !strings.HasPrefix(string(buf[:n]), "\x15") { // a TLS alert at most
		t.Fatalf("a plaintext peer was answered %q", buf[:n])
	}
}

func TestUnknownRaftCommandIsSkippedAndTheRMRestarts(t *testing.T) {
	pki := tlstest.New(t)
	dir, raftAddr, addr := t.TempDir(), freeAddr(t), freeAddr(t)
	s := onDiskServer(t, pki, dir, raftAddr, addr)
	waitUntil(t, "leadership", s.IsLeader)
	// A member of the cluster (a valid server certificate) appends an
	// entry of a command type no RM knows, and commits it.
	req := forgedAppend(s, []byte{0xC8, '{', '}'})
	forged := req.Entries[0].Index
	var resp raft.AppendEntriesResponse
	if err := forger(t, pki.Bundle(tlstest.Server("rm-2"))).AppendEntries("rm", raft.ServerAddress(raftAddr), req, &resp); err != nil || !resp.Success {
		t.Fatalf("the member's AppendEntries: %+v, %v", resp, err)
	}
	waitUntil(t, "the forged entry applied (skipped)", func() bool { return s.fsm.AppliedIndex() >= forged })
	waitUntil(t, "leadership again", s.IsLeader)
	c := clientAs(t, s, tlstest.User("alice"))
	if _, err := c.Nodes(context.Background(), true); err != nil {
		t.Fatalf("the RM is unwell after the unknown entry: %v", err)
	}
	c.Close()
	s.Shutdown()

	// Every restart replays the entry, and skips it again.
	s = onDiskServer(t, pki, dir, raftAddr, addr)
	defer s.Shutdown()
	waitUntil(t, "leadership after the restart", s.IsLeader)
	if s.fsm.AppliedIndex() < forged {
		t.Fatalf("applied index %d after the restart, the forged entry is %d", s.fsm.AppliedIndex(), forged)
	}
	if _, err := clientAs(t, s, tlstest.User("alice")).Nodes(context.Background(), true); err != nil {
		t.Fatalf("the restarted RM is unwell: %v", err)
	}
}
