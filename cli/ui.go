package cli

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/rm/rmclient"
)

func uiCommand() *cli.Command {
	return &cli.Command{
		Name:  "ui",
		Usage: "serve the cluster's web UI to this machine's browser, with your identity",
		Description: "The ResourceManager serves its web UI on its HTTP port, which takes only " +
			"certificates of the cluster's CA. `loom ui` listens on a local address and passes " +
			"your browser's requests on with your client certificate, so the pages show what " +
			"you may see (your own applications' tracking links and logs; an admin's, all). It " +
			"prints a link with a token that only it knows; the link sets the token as a cookie.",
		Flags: []cli.Flag{rmFlag, configFlag,
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8090", Usage: "address to serve the UI on (keep it on loopback: anyone with the link reads the cluster as you)"},
		},
		Action: func(c *cli.Context) error {
			return withRM(c, func(rm *rmclient.Client) error {
				p, err := newUIProxy(c.Context, rm)
				if err != nil {
					return err
				}
				ln, err := net.Listen("tcp", c.String("listen"))
				if err != nil {
					return fmt.Errorf("listening on %s: %w (choose another with --listen)", c.String("listen"), err)
				}
				srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
				done := make(chan error, 1)
				go func() { done <- srv.Serve(ln) }()
				fmt.Fprintf(stdout(), "loom web UI of the cluster at %s:\n  http://%s/?token=%s\n(Ctrl-C stops it)\n", p.base(), ln.Addr(), p.token)
				select {
				case err := <-done:
					return err
				case <-c.Context.Done():
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(ctx)
			})
		},
	}
}

// uiCookie holds the proxy's token in the browser.
const uiCookie = "loom_ui"

// uiProxy passes a browser's GET and HEAD requests to the web UI of a
// ResourceManager replica, with the user's certificate. A replica that
// does not answer is replaced by the one the RM client reaches next.
type uiProxy struct {
	rm    *rmclient.Client
	token string
	proxy *httputil.ReverseProxy
	tr    http.RoundTripper

	mu     sync.Mutex
	target *url.URL
}

func newUIProxy(ctx context.Context, rm *rmclient.Client) (*uiProxy, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	p := &uiProxy{rm: rm, token: hex.EncodeToString(b), tr: rmclient.HTTPClient(rm.TLS()).Transport}
	if err := p.resolve(ctx); err != nil {
		return nil, err
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.current())
			// The proxy's own credentials stay here.
			r.Out.Header.Del("Cookie")
			r.Out.Header.Del("Authorization")
		},
		Transport: retryOnce{p},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, fmt.Sprintf("the ResourceManager's web UI at %s did not answer: %v", p.base(), err), http.StatusBadGateway)
		},
	}
	return p, nil
}

// resolve asks the RM for its web address.
func (p *uiProxy) resolve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := p.rm.ServiceState(ctx)
	if err != nil {
		return err
	}
	if st.WebUrl == "" {
		return errors.New("the ResourceManager serves no web UI (it was started with an empty --http-addr)")
	}
	u, err := url.Parse(st.WebUrl)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("the ResourceManager gave %q as its web address, which is not an https URL", st.WebUrl)
	}
	p.mu.Lock()
	p.target = u
	p.mu.Unlock()
	return nil
}

func (p *uiProxy) current() *url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

func (p *uiProxy) base() string { return p.current().String() }

func (p *uiProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t := r.URL.Query().Get("token"); t != "" {
		if !p.valid(t) {
			http.Error(w, "this link's token is not the one `loom ui` printed", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: uiCookie, Value: p.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return
	}
	if c, err := r.Cookie(uiCookie); err != nil || !p.valid(c.Value) {
		http.Error(w, "open the link `loom ui` printed (it carries the token this UI asks for)", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the web UI only reads", http.StatusMethodNotAllowed)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *uiProxy) valid(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(p.token)) == 1
}

// retryOnce sends a request again, once, to the replica the RM client
// reaches next when the first one could not be reached. Only GET and
// HEAD come this far, and neither has a body.
type retryOnce struct{ p *uiProxy }

func (t retryOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.p.tr.RoundTrip(r)
	if err == nil || r.Context().Err() != nil {
		return resp, err
	}
	before := r.URL.Host
	if rerr := t.p.resolve(r.Context()); rerr != nil || t.p.current().Host == before {
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = t.p.current().Scheme, t.p.current().Host, t.p.current().Host
	return t.p.tr.RoundTrip(r2)
}
