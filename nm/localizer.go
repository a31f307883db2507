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
	"path/filepath"
	"strings"
	"sync"

	"loom/proto/yarnpb"
)

// localizer fetches local resources into a cache keyed by their sha256
// digest, verifying every byte, so a file shipped for many containers is
// fetched once per node.
type localizer struct {
	dir    string
	client *http.Client
	mu     sync.Mutex
	locks  map[string]*sync.Mutex // per digest
}

func newLocalizer(dir string, client *http.Client) *localizer {
	return &localizer{dir: dir, client: client, locks: map[string]*sync.Mutex{}}
}

func (l *localizer) lock(digest string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.locks[digest]
	if m == nil {
		m = &sync.Mutex{}
		l.locks[digest] = m
	}
	return m
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
		_ = os.Remove(link)
		if err := os.Symlink(path, link); err != nil {
			return fmt.Errorf("linking %s into the working directory: %w", r.Name, err)
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
	m := l.lock(digest)
	m.Lock()
	defer m.Unlock()
	path := filepath.Join(l.dir, digest)
	if st, err := os.Stat(path); err == nil {
		if r.Executable && st.Mode()&0o111 == 0 {
			_ = os.Chmod(path, 0o755)
		}
		return path, nil
	}
	src, err := l.open(ctx, r.Url)
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
	return path, nil
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
