// Package tlsutil is loom's one place for certificates: the cluster CA,
// the certificates it signs, the identity each carries, and every
// tls.Config a loom listener or client uses, with the rules that verify
// the other side.
package tlsutil

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Kinds of identity a loom certificate carries.
const (
	// KindServer is a ResourceManager replica.
	KindServer = "server"
	// KindNode is a NodeManager.
	KindNode = "node"
	// KindUser is a person or a script acting for one: the user name.
	KindUser = "user"
	// KindApp is the containers of one application (the RM signs it when
	// it launches the application's AM); User names its owner.
	KindApp = "app"
)

// uriScheme is the scheme of the URI SAN that holds an identity:
// loom://KIND/NAME[?user=U&groups=G1,G2].
const uriScheme = "loom"

// Identity is who a certificate's holder is.
type Identity struct {
	Kind string
	Name string
	// User is the owner of an app identity.
	User string
	// Groups are a user's groups (ACLs may name them).
	Groups []string
}

func (id Identity) String() string {
	switch id.Kind {
	case KindUser:
		return "user " + id.Name
	case KindApp:
		return fmt.Sprintf("application %s (user %s)", id.Name, id.User)
	case "":
		return "nobody"
	}
	return id.Kind + " " + id.Name
}

// IsAdmin reports whether id is a user that admins (user names, groups as
// "group:NAME", "*" for every user) names.
func IsAdmin(admins []string, id Identity) bool {
	if id.Kind != KindUser {
		return false
	}
	for _, a := range admins {
		if g, ok := strings.CutPrefix(a, "group:"); ok {
			if id.InGroup(g) {
				return true
			}
		} else if a == id.Name || a == "*" {
			return true
		}
	}
	return false
}

// InGroup reports whether the identity lists group g.
func (id Identity) InGroup(g string) bool { return slices.Contains(id.Groups, g) }

// namePattern bounds what a name in an identity may be: a user name, a
// node's host or host:port, an application id.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// Validate checks that the identity can be written into a certificate and
// read back unchanged.
func (id Identity) Validate() error {
	switch id.Kind {
	case KindServer, KindNode, KindUser, KindApp:
	default:
		return fmt.Errorf("unknown identity kind %q (server, node, user or app)", id.Kind)
	}
	if !namePattern.MatchString(id.Name) {
		return fmt.Errorf("identity name %q: use 1 to 128 letters, digits and . _ : @ -, starting with a letter or digit", id.Name)
	}
	if id.Kind == KindApp && !namePattern.MatchString(id.User) {
		return fmt.Errorf("application identity %s needs its user", id.Name)
	}
	for _, g := range id.Groups {
		if !namePattern.MatchString(g) {
			return fmt.Errorf("group %q: use 1 to 128 letters, digits and . _ : @ -", g)
		}
	}
	return nil
}

// URI encodes the identity as the URI SAN of its certificate.
func (id Identity) URI() *url.URL {
	q := url.Values{}
	if id.User != "" {
		q.Set("user", id.User)
	}
	if len(id.Groups) > 0 {
		q.Set("groups", strings.Join(id.Groups, ","))
	}
	return &url.URL{Scheme: uriScheme, Host: id.Kind, Path: "/" + id.Name, RawQuery: q.Encode()}
}

// FromCert reads the identity of a certificate the cluster CA signed.
func FromCert(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		q := u.Query()
		id := Identity{Kind: u.Host, Name: strings.TrimPrefix(u.Path, "/"), User: q.Get("user")}
		if g := q.Get("groups"); g != "" {
			id.Groups = strings.Split(g, ",")
		}
		if err := id.Validate(); err != nil {
			return Identity{}, fmt.Errorf("certificate %q: %w", c.Subject.CommonName, err)
		}
		return id, nil
	}
	return Identity{}, fmt.Errorf("certificate %q carries no loom identity; make one with `loom tls cert create`", c.Subject.CommonName)
}

type ctxKey struct{}

// WithIdentity returns a context that carries id, for handlers below the
// edge that resolved it.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity of a gRPC call's peer: the one an
// interceptor stored, else the verified client certificate of the
// connection.
func FromContext(ctx context.Context) (Identity, bool) {
	if id, ok := ctx.Value(ctxKey{}).(Identity); ok {
		return id, true
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return Identity{}, false
	}
	id, err := FromCert(info.State.VerifiedChains[0][0])
	return id, err == nil
}

// FromRequest returns the identity of an HTTP request's verified client
// certificate.
func FromRequest(r *http.Request) (Identity, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return Identity{}, false
	}
	id, err := FromCert(r.TLS.VerifiedChains[0][0])
	return id, err == nil
}
