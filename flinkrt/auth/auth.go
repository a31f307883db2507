// Package auth is how the processes of one Flink deployment know each
// other: its JobManager (with the Flink ResourceManager), its TaskManagers
// and their job workers, and the users they serve.
//
// Every gRPC and data connection among them is mutual TLS 1.3. Who may be
// on the other end comes from one of two places:
//
//   - In a loom application, the certificate its ResourceManager signed
//     for the application's containers (FromBundle): a peer is a member
//     when its certificate names the same application, and a user when it
//     is a user certificate of the cluster, whom the JobManager serves as
//     its owner, an admin or a reader.
//   - Standalone, a secret shared by a JobManager and its TaskManagers
//     through a file (FromSecret): every process derives the same key from
//     it, and a peer is a member when it proves it holds that key.
//
// A process that holds neither reaches nothing: a TaskManager takes slot
// requests only from its own deployment's JobManager and fetches programs
// only from it, and a worker's data port takes only its deployment's
// workers.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// Peer is who is on the other end of a verified connection.
type Peer struct {
	// Member is a process of this deployment: its JobManager, a
	// TaskManager or a job worker.
	Member bool
	// User is the user a client acts for, when it is not a member.
	User string
	// Owner says the user is the deployment's owner, Admin that the user
	// is an admin of the cluster.
	Owner bool
	Admin bool
}

func (p Peer) String() string {
	switch {
	case p.Member:
		return "a process of this deployment"
	case p.User != "":
		return "user " + p.User
	}
	return "nobody"
}

// MayChange reports whether the peer may change the deployment's jobs:
// a member, the owner or an admin.
func (p Peer) MayChange() bool { return p.Member || p.Owner || p.Admin }

// Trust is one process's side of its deployment's trust: the TLS
// configurations of its listeners and connections, and how a verified
// peer is told apart.
type Trust struct {
	server *tls.Config
	client *tls.Config
	peerOf func(tls.ConnectionState) (Peer, error)
	owner  string
	token  string
	env    map[string]string
}

// ServerTLS is the configuration of a listener: a peer certificate is
// required, and the handshake fails for anyone outside the deployment
// and its users.
func (t *Trust) ServerTLS() *tls.Config { return t.server }

// ClientTLS is the configuration of a connection to a member.
func (t *Trust) ClientTLS() *tls.Config { return t.client }

// DialOptions are the gRPC options of a connection to a member.
func (t *Trust) DialOptions() []grpc.DialOption { return rpc.DialOptions(t.client) }

// Owner is the user the deployment runs for: empty standalone.
func (t *Trust) Owner() string { return t.owner }

// WebToken is the token the JobManager's REST API asks of callers that
// change jobs, and of every caller off loopback.
func (t *Trust) WebToken() string { return t.token }

// CheckWebToken reports whether tok is the deployment's web token.
func (t *Trust) CheckWebToken(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(t.token)) == 1
}

// Env is what a child process of a member (a job worker) needs in its
// environment to build the same trust with FromEnv.
func (t *Trust) Env() map[string]string { return t.env }

// PeerOf is the peer of a verified TLS connection.
func (t *Trust) PeerOf(cs tls.ConnectionState) (Peer, error) { return t.peerOf(cs) }

// Allow decides whether peer may call a gRPC method (its full name).
type Allow func(p Peer, method string) error

// MembersOnly allows only the deployment's own processes.
func MembersOnly(p Peer, method string) error {
	if p.Member {
		return nil
	}
	return errdefs.PermissionDenied("%s may not call %s: only processes of this deployment may", p, shortMethod(method))
}

func shortMethod(m string) string { return m[strings.LastIndex(m, "/")+1:] }

// ServerOptions are the gRPC options of a member's listener: its TLS, and
// allow run before every call, with the caller's Peer in the context
// handlers get (FromContext).
func (t *Trust) ServerOptions(allow Allow) []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.Creds(credentials.NewTLS(t.server))}
	return append(opts, rpc.AuthOptions(func(ctx context.Context, method string) (context.Context, error) {
		pr, ok := peer.FromContext(ctx)
		if !ok {
			return nil, errdefs.Unauthenticated("the call came over no connection")
		}
		info, ok := pr.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return nil, errdefs.Unauthenticated("the call came without TLS")
		}
		p, err := t.peerOf(info.State)
		if err != nil {
			return nil, errdefs.Unauthenticated("%v", err)
		}
		if err := allow(p, method); err != nil {
			return nil, err
		}
		return context.WithValue(ctx, peerKey{}, p), nil
	})...)
}

type peerKey struct{}

// FromContext is the caller of a gRPC call that ServerOptions let in.
func FromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// SecretSize is the size of a deployment secret, in bytes.
const SecretSize = 32

// NewSecret makes a random deployment secret.
func NewSecret() []byte {
	b := make([]byte, SecretSize)
	_, _ = rand.Read(b)
	return b
}

// secretName is the DNS name a secret-derived certificate carries; it is
// not what peers check (the key is).
const secretName = "flink.loom"

// FromSecret is the trust of a standalone deployment whose processes share
// secret: each derives the same Ed25519 key from it, presents a
// certificate of that key, and takes only peers that present the same key.
// The TLS 1.3 handshake proves a peer holds the key, not just its public
// half. file, when not empty, is where the secret lives, for job workers
// to read.
func FromSecret(secret []byte, file string) (*Trust, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("a deployment secret is %d bytes, not %d", SecretSize, len(secret))
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, "loom flink tls v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: secretName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{secretName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate")
		}
		theirs, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
		if !ok || !pub.Equal(theirs) {
			return errors.New("the peer does not hold this deployment's secret")
		}
		return nil
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("loom flink web token v1"))
	t := &Trust{
		server: &tls.Config{
			MinVersion:       tls.VersionTLS13,
			Certificates:     []tls.Certificate{cert},
			ClientAuth:       tls.RequireAnyClientCert,
			VerifyConnection: verify,
		},
		client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ServerName:   secretName,
			// The peer is checked by the key it proves to hold, in
			// VerifyConnection, which runs on every connection: there
			// is no CA to verify a chain against.
			InsecureSkipVerify: true,
			VerifyConnection:   verify,
			ClientSessionCache: tls.NewLRUClientSessionCache(256),
		},
		peerOf: func(cs tls.ConnectionState) (Peer, error) {
			if err := verify(cs); err != nil {
				return Peer{}, err
			}
			return Peer{Member: true}, nil
		},
		token: hex.EncodeToString(mac.Sum(nil)),
	}
	if file != "" {
		t.env = map[string]string{EnvSecretFile: file}
	}
	return t, nil
}

// FromBundle is the trust of a process of a loom application, whose
// certificate (b, of kind app) the cluster's ResourceManager signed:
// members hold a certificate of the same application; clients are users
// of the cluster, admins as admins names them (tlsutil.IsAdmin).
func FromBundle(b *tlsutil.Bundle, admins []string) (*Trust, error) {
	self := b.Identity
	if self.Kind != tlsutil.KindApp {
		return nil, fmt.Errorf("%s is not an application's certificate", self)
	}
	peerOf := func(cs tls.ConnectionState) (Peer, error) {
		if len(cs.PeerCertificates) == 0 {
			return Peer{}, errors.New("the peer presented no certificate")
		}
		id, err := tlsutil.FromCert(cs.PeerCertificates[0])
		if err != nil {
			return Peer{}, err
		}
		switch {
		case id.Kind == tlsutil.KindApp && id.Name == self.Name:
			return Peer{Member: true}, nil
		case id.Kind == tlsutil.KindUser:
			return Peer{User: id.Name, Owner: id.Name == self.User, Admin: tlsutil.IsAdmin(admins, id)}, nil
		}
		return Peer{}, fmt.Errorf("%s may not connect to application %s", id, self.Name)
	}
	server := b.ServerConfig(tlsutil.KindApp, tlsutil.KindUser)
	server.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := peerOf(cs)
		return err
	}
	tok := make([]byte, 32)
	_, _ = rand.Read(tok)
	t := &Trust{
		server: server, client: b.AppClientConfig(self.Name), peerOf: peerOf,
		owner: self.User, token: hex.EncodeToString(tok),
	}
	if dir := os.Getenv(tlsutil.EnvCredentials); dir != "" {
		t.env = map[string]string{tlsutil.EnvCredentials: dir}
	}
	return t, nil
}

// ForUser is the trust of a user's client (b, of kind user) of
// application appID's JobManager. It only dials.
func ForUser(b *tlsutil.Bundle, appID string) *Trust {
	return &Trust{client: b.AppClientConfig(appID), owner: b.Identity.Name}
}

// IsLoopback reports whether a listener's address takes connections from
// this machine only.
func IsLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
