package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Files names a process's TLS files: the cluster CA's certificate, and
// the process's own certificate and key.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// Missing names the flags of the files not given, or "" when all are.
func (f Files) Missing() string {
	var m []string
	if f.CA == "" {
		m = append(m, "--tls-ca")
	}
	if f.Cert == "" {
		m = append(m, "--tls-cert")
	}
	if f.Key == "" {
		m = append(m, "--tls-key")
	}
	return strings.Join(m, ", ")
}

// Bundle is a loaded identity: the CA that every peer must chain to, this
// process's certificate, and the identity it carries.
type Bundle struct {
	Pool     *x509.CertPool
	CA       *x509.Certificate
	CAPEM    []byte
	Cert     tls.Certificate
	Identity Identity
	sessions tls.ClientSessionCache
}

// Load reads a bundle from files.
func Load(f Files) (*Bundle, error) {
	if m := f.Missing(); m != "" {
		verb := "is"
		if strings.Contains(m, ",") {
			verb = "are"
		}
		return nil, fmt.Errorf("TLS is required and %s %s not set; make the files with `loom tls` (or let `loom cluster up` make them) and pass them as flags or LOOM_TLS_CA, LOOM_TLS_CERT, LOOM_TLS_KEY", m, verb)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("reading the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("reading the key: %w", err)
	}
	b, err := FromPEM(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", f.Cert, f.Key, err)
	}
	return b, nil
}

// FromPEM builds a bundle from PEM bytes.
func FromPEM(caPEM, certPEM, keyPEM []byte) (*Bundle, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the certificate is not signed by the cluster CA %q: %w", ca.Subject.CommonName, err)
	}
	id, err := FromCert(leaf)
	if err != nil {
		return nil, err
	}
	return &Bundle{Pool: pool, CA: ca, CAPEM: caPEM, Cert: pair, Identity: id, sessions: tls.NewLRUClientSessionCache(256)}, nil
}

// ServerConfig is the configuration of a listener: TLS 1.3, a client
// certificate of the cluster required, and its identity of one of kinds
// (any kind when none are given).
func (b *Bundle) ServerConfig(kinds ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    b.Pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkPeer(cs, kinds)
		},
	}
}

// ClientConfig is the configuration of a connection to a ResourceManager
// (ServerName) or a NodeManager (NodeName): the peer must chain to the
// cluster CA and carry that role.
func (b *Bundle) ClientConfig(role string) *tls.Config {
	kind := KindServer
	if role == NodeName {
		kind = KindNode
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{b.Cert},
		RootCAs:            b.Pool,
		ServerName:         role,
		ClientSessionCache: b.sessions,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkPeer(cs, []string{kind})
		},
	}
}

// AppClientConfig is the configuration of a connection to a process of
// application appID: the peer must chain to the cluster CA and carry that
// application's identity.
func (b *Bundle) AppClientConfig(appID string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{b.Cert},
		RootCAs:            b.Pool,
		ServerName:         AppName,
		ClientSessionCache: b.sessions,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := peerIdentity(cs)
			if err != nil {
				return err
			}
			if id.Kind != KindApp || id.Name != appID {
				return fmt.Errorf("the peer is %s, not application %s", id, appID)
			}
			return nil
		},
	}
}

// peerIdentity is the identity of a connection's peer certificate.
func peerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("the peer presented no certificate")
	}
	return FromCert(cs.PeerCertificates[0])
}

func checkPeer(cs tls.ConnectionState, kinds []string) error {
	id, err := peerIdentity(cs)
	if err != nil {
		return err
	}
	if len(kinds) > 0 && !slices.Contains(kinds, id.Kind) {
		return fmt.Errorf("%s may not connect here (only %s)", id, strings.Join(kinds, ", "))
	}
	return nil
}

// ServerOption is the gRPC server option of a listener that takes peers
// of kinds.
func (b *Bundle) ServerOption(kinds ...string) grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(b.ServerConfig(kinds...)))
}

// DialOption is the gRPC dial option of a connection to role.
func (b *Bundle) DialOption(role string) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(b.ClientConfig(role)))
}
