package rm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
)

// The staging store keeps the files clients ship to their applications'
// containers (a job's program, its JobGraph, the loom binary), by their
// SHA-256, under the data dir: PUT /staging/<sha256> stores a file after
// checking its digest, GET serves it (NodeManagers localize it from there),
// HEAD says whether it is there (and, as a client asks just before it
// names the file in a submission, keeps it another grace period). A file
// no running application's AM names is removed once it is older than the
// grace period, which covers the time between an upload and the
// submission that names it: an application's files go soon after it
// ends.
//
// Only users stage files, each within a quota: the bytes of the files
// they uploaded that are still here, and of their uploads in flight
// (each declares its Content-Length first), stay under quota. The record
// of who uploaded what is this replica's memory; after a restart the
// files already here count for no one until they are collected.
type staging struct {
	dir   string
	grace time.Duration
	log   hclog.Logger
	quota int64

	mu sync.Mutex
	// owners are the uploaders of the files here, by digest; reserved
	// the bytes of uploads in flight, by user.
	owners   map[string]stagedFile
	reserved map[string]int64

	// replicate, when set, copies a file a user staged here to the other
	// replicas before the upload is answered (staging_replicas.go).
	replicate func(digest, path string, size int64)
}

type stagedFile struct {
	user string
	size int64
}

// DefaultStagingQuota bounds what one user may keep in the staging store.
const DefaultStagingQuota = 16 << 30

// maxStaged bounds one staged file.
const maxStaged = 4 << 30

// stagingGrace is how long an unreferenced staged file is kept.
const stagingGrace = 10 * time.Minute

func newStaging(dir string, quota int64, log hclog.Logger) (*staging, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the staging store: %w", err)
	}
	if quota <= 0 {
		quota = DefaultStagingQuota
	}
	return &staging{dir: dir, grace: stagingGrace, log: log, quota: quota, owners: map[string]stagedFile{}, reserved: map[string]int64{}}, nil
}

// reserve books n bytes of user's quota for an upload, or says why not.
func (st *staging) reserve(user string, n int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	used := st.reserved[user]
	for _, f := range st.owners {
		if f.user == user {
			used += f.size
		}
	}
	if used+n > st.quota {
		return fmt.Errorf("user %s has %d MiB staged and in flight; %d MiB more is over the staging quota of %d MiB (files go once no running application needs them)",
			user, used>>20, (n+1<<20-1)>>20, st.quota>>20)
	}
	st.reserved[user] += n
	return nil
}

// settle ends a reservation; a stored file counts for user from then on.
func (st *staging) settle(user string, n int64, digest string, stored bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reserved[user] -= n; st.reserved[user] <= 0 {
		delete(st.reserved, user)
	}
	if stored {
		st.owners[digest] = stagedFile{user: user, size: n}
	}
}

func digestOf(s string) (string, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", false
	}
	return hex.EncodeToString(b), true
}

func stagingError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"RemoteException": map[string]any{"exception": http.StatusText(code), "message": msg}})
}

func (st *staging) routes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /staging/{sha}", st.put)
	mux.HandleFunc("GET /staging/{sha}", st.get)
	mux.HandleFunc("HEAD /staging/{sha}", st.head)
}

func (st *staging) put(w http.ResponseWriter, r *http.Request) {
	id, _ := tlsutil.FromRequest(r)
	if id.Kind != tlsutil.KindUser && id.Kind != tlsutil.KindServer {
		stagingError(w, http.StatusForbidden, fmt.Sprintf("%s may not stage files; only users who submit applications may", id))
		return
	}
	// Another replica copying an upload it took: its user's quota was
	// checked there.
	fromReplica := id.Kind == tlsutil.KindServer
	digest, ok := digestOf(r.PathValue("sha"))
	if !ok {
		stagingError(w, http.StatusBadRequest, "the path names a file by its SHA-256: /staging/<64 hex digits>")
		return
	}
	final := filepath.Join(st.dir, digest)
	if _, err := os.Stat(final); err == nil {
		// Already there: refresh its grace period for the new submission.
		now := time.Now()
		_ = os.Chtimes(final, now, now)
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxStaged))
		w.WriteHeader(http.StatusOK)
		return
	}
	size := r.ContentLength
	switch {
	case size < 0:
		stagingError(w, http.StatusLengthRequired, "an upload declares its size (Content-Length)")
		return
	case size > maxStaged:
		stagingError(w, http.StatusRequestEntityTooLarge, "a staged file is at most 4 GiB")
		return
	}
	stored := false
	if !fromReplica {
		if err := st.reserve(id.Name, size); err != nil {
			stagingError(w, http.StatusRequestEntityTooLarge, err.Error())
			return
		}
		defer func() { st.settle(id.Name, size, digest, stored) }()
	}
	f, err := os.CreateTemp(st.dir, "upload-")
	if err != nil {
		stagingError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r.Body, size+1))
	if err != nil {
		stagingError(w, http.StatusBadRequest, "reading the upload: "+err.Error())
		return
	}
	if n != size {
		stagingError(w, http.StatusBadRequest, fmt.Sprintf("the upload is %d bytes, not the %d its Content-Length says", n, size))
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		stagingError(w, http.StatusBadRequest, fmt.Sprintf("the upload's SHA-256 is %s, not %s as its path says", got, digest))
		return
	}
	if err := f.Close(); err != nil {
		stagingError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if err := os.Rename(f.Name(), final); err != nil {
		stagingError(w, http.StatusInternalServerError, err.Error())
		return
	}
	stored = true
	st.log.Debug("staged", "sha256", digest, "bytes", n, "from_replica", fromReplica)
	if !fromReplica && st.replicate != nil {
		st.replicate(digest, final, size)
	}
	w.WriteHeader(http.StatusCreated)
}

func (st *staging) get(w http.ResponseWriter, r *http.Request) {
	digest, ok := digestOf(r.PathValue("sha"))
	if !ok {
		stagingError(w, http.StatusBadRequest, "the path names a file by its SHA-256: /staging/<64 hex digits>")
		return
	}
	f, err := os.Open(filepath.Join(st.dir, digest))
	if err != nil {
		stagingError(w, http.StatusNotFound, "nothing staged as "+digest)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		stagingError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (st *staging) head(w http.ResponseWriter, r *http.Request) {
	if digest, ok := digestOf(r.PathValue("sha")); ok {
		now := time.Now()
		_ = os.Chtimes(filepath.Join(st.dir, digest), now, now)
	}
	st.get(w, r)
}

// referenced returns the digests of staged files that the AMs of running
// applications name.
func referenced(snap *state.ReadTxn) map[string]bool {
	live := map[string]bool{}
	for _, a := range snap.LiveApps(nil) {
		if len(a.AMLaunch) == 0 {
			continue
		}
		var clc yarnpb.ContainerLaunchContext
		if proto.Unmarshal(a.AMLaunch, &clc) != nil {
			continue
		}
		for _, lr := range clc.LocalResources {
			u, err := url.Parse(lr.Url)
			if err != nil || path.Dir(u.Path) != "/staging" {
				continue
			}
			if d, ok := digestOf(path.Base(u.Path)); ok {
				live[d] = true
			}
		}
	}
	return live
}

// collect removes staged files that are unreferenced and past the grace
// period, and returns how many it removed.
func (st *staging) collect(live map[string]bool, now time.Time) int {
	entries, err := os.ReadDir(st.dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < st.grace {
			continue
		}
		if _, ok := digestOf(e.Name()); ok && live[e.Name()] {
			continue
		}
		if os.Remove(filepath.Join(st.dir, e.Name())) == nil {
			removed++
			st.mu.Lock()
			delete(st.owners, e.Name())
			st.mu.Unlock()
		}
	}
	if removed > 0 {
		st.log.Info("removed staged files no running application needs", "files", removed)
	}
	return removed
}
