// Package tlstest makes a throwaway cluster CA and its certificates for
// tests.
package tlstest

import (
	"path/filepath"
	"testing"

	"github.com/loom-project/loom/tlsutil"
)

// PKI is a test cluster's CA.
type PKI struct {
	CA  *tlsutil.CA
	Dir string
	t   testing.TB
}

// New creates a CA whose files live in a temporary directory.
func New(t testing.TB) *PKI {
	t.Helper()
	ca, err := tlsutil.NewCA("test", tlsutil.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteFiles(dir, true, map[string][]byte{"ca.pem": ca.PEM, "ca-key.pem": key}); err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca, Dir: dir, t: t}
}

// Bundle issues a certificate for id and loads it.
func (p *PKI) Bundle(id tlsutil.Identity) *tlsutil.Bundle {
	p.t.Helper()
	iss, err := p.CA.Sign(tlsutil.CertRequest{Identity: id})
	if err != nil {
		p.t.Fatal(err)
	}
	b, err := tlsutil.FromPEM(p.CA.PEM, iss.CertPEM, iss.KeyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// Files issues a certificate for id and writes it beside the CA, as
// NAME.pem and NAME-key.pem.
func (p *PKI) Files(name string, id tlsutil.Identity) tlsutil.Files {
	p.t.Helper()
	iss, err := p.CA.Sign(tlsutil.CertRequest{Identity: id})
	if err != nil {
		p.t.Fatal(err)
	}
	if err := tlsutil.WriteFiles(p.Dir, true, map[string][]byte{name + ".pem": iss.CertPEM, name + "-key.pem": iss.KeyPEM}); err != nil {
		p.t.Fatal(err)
	}
	return tlsutil.Files{CA: filepath.Join(p.Dir, "ca.pem"), Cert: filepath.Join(p.Dir, name+".pem"), Key: filepath.Join(p.Dir, name+"-key.pem")}
}

// CAKeyFile is the path of the CA's key.
func (p *PKI) CAKeyFile() string { return filepath.Join(p.Dir, "ca-key.pem") }

// User, Server and Node are the common identities.
func User(name string, groups ...string) tlsutil.Identity {
	return tlsutil.Identity{Kind: tlsutil.KindUser, Name: name, Groups: groups}
}

// Server is an RM replica's identity.
func Server(name string) tlsutil.Identity {
	return tlsutil.Identity{Kind: tlsutil.KindServer, Name: name}
}

// Node is a NodeManager's identity.
func Node(name string) tlsutil.Identity {
	return tlsutil.Identity{Kind: tlsutil.KindNode, Name: name}
}
