package jobmanager

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/loom-project/loom/flinkrt/auth"
)

// The REST API's access rule, after Flink's: read-only GETs are open on a
// loopback listener (as Flink's REST API is), and need the deployment's
// web token on any other address; anything that changes a job or the
// cluster (cancel, including the dashboard's GET yarn-cancel, savepoint,
// stop, shutdown), and the logs and stacks, need it everywhere. A caller presents the token as
// "Authorization: Bearer TOKEN", or a browser opens the dashboard link
// (WebURL), whose token becomes a cookie that only this site's own pages
// send (SameSite=Strict), so another site cannot act through the owner's
// browser.
const (
	tokenParam  = "token"
	tokenCookie = "loom-token"
)

// WebURL is the dashboard link of the REST API, which carries the web
// token: what its owner opens in a browser. Empty when REST is off.
func (jm *JobManager) WebURL() string {
	if jm.restL == nil {
		return ""
	}
	return "http://" + jm.RestAddr() + "/?" + tokenParam + "=" + url.QueryEscape(jm.cfg.Trust.WebToken())
}

// changes reports whether a REST request changes a job or the cluster.
func changes(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	return strings.HasSuffix(r.URL.Path, "/yarn-cancel") || strings.HasSuffix(r.URL.Path, "/yarn-stop")
}

// private reports whether a REST read shows what only the job's owner
// should see, even on a loopback address: the JobManager's and
// TaskManagers' logs, standard output, thread dumps and flame graphs.
func private(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasSuffix(p, "/log") || strings.HasSuffix(p, "/stdout") || strings.Contains(p, "/logs") ||
		strings.HasSuffix(p, "/thread-dump") || strings.HasSuffix(p, "/flamegraph")
}

// restAuth checks the access rule before next.
func (jm *JobManager) restAuth(next http.Handler) http.Handler {
	open := auth.IsLoopback(jm.restL.Addr())
	trust := jm.cfg.Trust
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = strings.TrimSpace(h)
		} else if c, err := r.Cookie(tokenCookie); err == nil {
			tok = c.Value
		}
		if q := r.URL.Query(); q.Has(tokenParam) && trust.CheckWebToken(q.Get(tokenParam)) {
			tok = q.Get(tokenParam)
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if r.Method == http.MethodGet && r.URL.Path == "/" {
				// The dashboard link: the cookie now holds the token,
				// so the address bar and history need not.
				q.Del(tokenParam)
				u := *r.URL
				u.RawQuery = q.Encode()
				http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
				return
			}
		}
		if !trust.CheckWebToken(tok) && (changes(r) || private(r) || !open) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="loom JobManager"`)
			what := "This request changes a job or the cluster"
			switch {
			case private(r) && !changes(r):
				what = "This request reads logs or stacks"
			case !changes(r):
				what = "This REST API is not on a loopback address, so every request"
			}
			restError(w, http.StatusUnauthorized, what+" and needs the JobManager's web token: open the dashboard link that `loom run -d` or `loom app status` prints, or send it as \"Authorization: Bearer TOKEN\"")
			return
		}
		next.ServeHTTP(w, r)
	})
}
