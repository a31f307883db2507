package tlsutil_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

func TestIdentityRoundTripsThroughACertificate(t *testing.T) {
	p := tlstest.New(t)
	for _, id := range []tlsutil.Identity{
		tlstest.User("alice", "admins", "dev"),
		tlstest.Server("rm-1"),
		tlstest.Node("10.0.0.7:8041"),
		{Kind: tlsutil.KindApp, Name: "application_1700000000000_0001", User: "bob"},
	} {
		b := p.Bundle(id)
		if got := b.Identity; got.String() != id.String() || strings.Join(got.Groups, ",") != strings.Join(id.Groups, ",") || got.User != id.User {
			t.Errorf("identity %v came back as %v", id, got)
		}
	}
}

func TestSignRefusesBadIdentities(t *testing.T) {
	p := tlstest.New(t)
	for _, id := range []tlsutil.Identity{
		{Kind: "root", Name: "x"},
		{Kind: tlsutil.KindUser, Name: "../etc"},
		{Kind: tlsutil.KindUser, Name: ""},
		{Kind: tlsutil.KindUser, Name: "a", Groups: []string{"x,y"}},
		{Kind: tlsutil.KindApp, Name: "application_1_0001"},
	} {
		if _, err := p.CA.Sign(tlsutil.CertRequest{Identity: id}); err == nil {
			t.Errorf("identity %+v was signed", id)
		}
	}
}

// handshake runs one TLS handshake between a server of kinds and a client
// and returns the client's and the server's errors.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) (error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(b, srv)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3 verifies the client's certificate after the client
			// has finished; a read surfaces the server's verdict.
			_, err = s.Write([]byte{1})
		}
		srvErr <- err
		b.Close()
	}()
	c := tls.Client(a, cli)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	a.Close()
	return err, <-srvErr
}

func TestServersTakeOnlyPeersOfTheirKindsFromTheirCluster(t *testing.T) {
	p := tlstest.New(t)
	other := tlstest.New(t)
	rm := p.Bundle(tlstest.Server("rm"))
	cases := []struct {
		name  string
		kinds []string
		cli   *tlsutil.Bundle
		ok    bool
	}{
		{"a user on the client port", nil, p.Bundle(tlstest.User("alice")), true},
		{"a server on the raft port", []string{tlsutil.KindServer}, p.Bundle(tlstest.Server("rm-2")), true},
		{"a user on the raft port", []string{tlsutil.KindServer}, p.Bundle(tlstest.User("alice")), false},
		{"a node on the raft port", []string{tlsutil.KindServer}, p.Bundle(tlstest.Node("n1")), false},
		{"a server of another cluster", nil, other.Bundle(tlstest.Server("rm")), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cerr, serr := handshake(t, rm.ServerConfig(tc.kinds...), tc.cli.ClientConfig(tlsutil.ServerName))
			if tc.ok && (cerr != nil || serr != nil) {
				t.Fatalf("refused: client %v, server %v", cerr, serr)
			}
			if !tc.ok && serr == nil {
				t.Fatal("the server took the connection")
			}
		})
	}
}

func TestClientsVerifyTheServersRole(t *testing.T) {
	p := tlstest.New(t)
	alice := p.Bundle(tlstest.User("alice"))
	// A node presenting itself where a ResourceManager is expected.
	node := p.Bundle(tlstest.Node("n1"))
	cerr, _ := handshake(t, node.ServerConfig(), alice.ClientConfig(tlsutil.ServerName))
	if cerr == nil {
		t.Fatal("a node certificate passed for a ResourceManager")
	}
	if cerr, serr := handshake(t, node.ServerConfig(), alice.ClientConfig(tlsutil.NodeName)); cerr != nil || serr != nil {
		t.Fatalf("a node was refused as a node: %v, %v", cerr, serr)
	}
	// A client without a certificate.
	bare := &tls.Config{RootCAs: alice.Pool, ServerName: tlsutil.NodeName, MinVersion: tls.VersionTLS13}
	if _, serr := handshake(t, node.ServerConfig(), bare); serr == nil {
		t.Fatal("a client without a certificate was taken")
	}
}

func TestLoadCAChecksTheKeyMatches(t *testing.T) {
	p := tlstest.New(t)
	other := tlstest.New(t)
	if _, err := tlsutil.LoadCA(p.Dir+"/ca.pem", p.CAKeyFile()); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.LoadCA(p.Dir+"/ca.pem", other.CAKeyFile()); err == nil || !strings.Contains(err.Error(), "not the key") {
		t.Fatalf("a foreign key was taken: %v", err)
	}
}

func TestLoadSaysWhichFlagsAreMissing(t *testing.T) {
	_, err := tlsutil.Load(tlsutil.Files{CA: "ca.pem"})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert, --tls-key") {
		t.Fatalf("got %v", err)
	}
}
