package nm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
)

// localizer fetches local resources into a cache keyed by their sha256
// digest, verifying every byte, so a file shipped for many containers is
// fetched once per node. A fetched file is synced before it takes its
// name; an entry this process did not fetch (one a crash may have left
// cut short) is hashed again before its first use; the cache is bounded
// to maxBytes, the least recently used entries going first. Containers
// get hard links, so an entry evicted while in use stays whole for them.
type localizer struct {
	dir      string
	client   *http.Client
	maxBytes int64

	mu       sync.Mutex
	locks    map[string]*digestLock // per digest, while in use
	verified map[string]bool        // entries checked since this process started
	// staging is the RM leader's staging store (the latest heartbeat's):
	// a staged file whose URL names a replica that does not answer is
	// fetched from there, as every replica holds every staged file.
	staging string
}

// setStaging records the leader's staging store.
func (l *localizer) setStaging(base string) {
	l.mu.Lock()
	l.staging = base
	l.mu.Unlock()
}

// stagedElsewhere is the URL of raw's file in the leader's staging store,
// or "" when raw is no staged file or names that store already.
func (l *localizer) stagedElsewhere(raw string) string {
	l.mu.Lock()
	base := l.staging
	l.mu.Unlock()
	u, err := url.Parse(raw)
	if base == "" || err != nil || path.Dir(u.Path) != "/staging" || strings.HasPrefix(raw, base) {
		return ""
	}
	return base + path.Base(u.Path)
}

type digestLock struct {
	sync.Mutex
	users int
}

// DefaultCacheMB bounds a node's localization cache.
const DefaultCacheMB = 10 << 10

func newLocalizer(dir string, client *http.Client, maxBytes int64) *localizer {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheMB << 20
	}
	return &localizer{dir: dir, client: client, maxBytes: maxBytes, locks: map[string]*digestLock{}, verified: map[string]bool{}}
}

// lock takes the digest's lock; unlock gives it back, and forgets it
// once no one waits for it.
func (l *localizer) lock(digest string) (unlock func()) {
	l.mu.Lock()
	m := l.locks[digest]
	if m == nil {
		m = &digestLock{}
		l.locks[digest] = m
	}
	m.users++
	l.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		l.mu.Lock()
		if m.users--; m.users == 0 {
			delete(l.locks, digest)
		}
		l.mu.Unlock()
	}
}

// localize fetches every resource and links it into workDir.
func (l *localizer) localize(ctx context.Context, workDir string, res []*yarnpb.LocalResource) error {
	for _, r := range res {
		if !yarnpb.PlainName(r.Name) {
			return fmt.Errorf("local resource name %q is not a plain file name", r.Name)
		}
		path, err := l.fetch(ctx, r)
		if err != nil {
			return fmt.Errorf("localizing %s from %s: %w", r.Name, r.Url, err)
		}
		link := filepath.Join(workDir, r.Name)
		if r.Archive {
			if err := unpack(path, link); err != nil {
				return fmt.Errorf("unpacking %s: %w", r.Name, err)
			}
			continue
		}
		_ = os.Remove(link)
		if err := os.Link(path, link); err != nil {
			if err := os.Symlink(path, link); err != nil {
				return fmt.Errorf("linking %s into the working directory: %w", r.Name, err)
			}
		}
	}
	return nil
}

// fetch returns the cached file of a resource, fetching it first if needed.
func (l *localizer) fetch(ctx context.Context, r *yarnpb.LocalResource) (string, error) {
	digest := strings.ToLower(r.Sha256)
	if _, err := hex.DecodeString(digest); err != nil || len(digest) != 64 {
		return "", fmt.Errorf("sha256 %q is not a hex digest", r.Sha256)
	}
	defer l.lock(digest)()
	path := filepath.Join(l.dir, digest)
	if st, err := os.Stat(path); err == nil {
		if l.intact(path, digest, st, r.Size) {
			if r.Executable && st.Mode()&0o111 == 0 {
				_ = os.Chmod(path, 0o755)
			}
			now := time.Now()
			_ = os.Chtimes(path, now, now) // recently used
			return path, nil
		}
		_ = os.Remove(path) // cut short or changed: fetch it again
	}
	src, err := l.open(ctx, r.Url)
	if alt := l.stagedElsewhere(r.Url); err != nil && alt != "" {
		var aerr error
		if src, aerr = l.open(ctx, alt); aerr != nil {
			return "", fmt.Errorf("%v; and from the leader's staging store: %v", err, aerr)
		}
		err = nil
	}
	if err != nil {
		return "", err
	}
	defer src.Close()
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(l.dir, ".fetch-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil {
		err = tmp.Sync() // whole on disk before it takes its name
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("reading: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return "", fmt.Errorf("sha256 mismatch: expected %s, got %s (the file changed after it was named; name it again with its current digest)", digest, got)
	}
	if r.Size > 0 && n != r.Size {
		return "", fmt.Errorf("size mismatch: expected %d bytes, got %d", r.Size, n)
	}
	mode := os.FileMode(0o644)
	if r.Executable {
		mode = 0o755
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	if d, err := os.Open(l.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	l.mu.Lock()
	l.verified[digest] = true
	l.mu.Unlock()
	l.evict(digest)
	return path, nil
}

// intact reports whether a cache entry is the file its digest names: its
// size when the resource says one, and, the first time this process uses
// an entry it did not fetch, its digest.
func (l *localizer) intact(path, digest string, st os.FileInfo, size int64) bool {
	if size > 0 && st.Size() != size {
		return false
	}
	l.mu.Lock()
	ok := l.verified[digest]
	l.mu.Unlock()
	if ok {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil || hex.EncodeToString(h.Sum(nil)) != digest {
		return false
	}
	l.mu.Lock()
	l.verified[digest] = true
	l.mu.Unlock()
	return true
}

// evict removes the least recently used entries, never keep, until the
// cache is within its bound.
func (l *localizer) evict(keep string) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return
	}
	type entry struct {
		name string
		size int64
		used time.Time
	}
	var all []entry
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || len(e.Name()) != 64 {
			continue
		}
		all = append(all, entry{e.Name(), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= l.maxBytes {
			break
		}
		if e.name == keep {
			continue
		}
		if os.Remove(filepath.Join(l.dir, e.name)) == nil {
			total -= e.size
			l.mu.Lock()
			delete(l.verified, e.name)
			l.mu.Unlock()
		}
	}
}

func (l *localizer) open(ctx context.Context, raw string) (io.ReadCloser, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad url: %w", err)
	}
	switch u.Scheme {
	case "file":
		return os.Open(u.Path)
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return nil, err
		}
		resp, err := l.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", raw, resp.Status)
		}
		return resp.Body, nil
	}
	return nil, errors.New("unsupported url scheme " + u.Scheme + " (use file://, http:// or https://)")
}
