package rmclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/loom-project/loom/tlsutil/tlstest"
)

// newStagingServer serves h over the cluster's TLS and returns a client
// of it.
func newStagingServer(t *testing.T, h http.Handler) (*httptest.Server, *Client) {
	p := tlstest.New(t)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = p.Bundle(tlstest.Server("rm")).ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := New([]string{"127.0.0.1:1"}, p.Bundle(tlstest.User("alice")))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// stagingStore is a content-addressed store speaking the RM's staging
// protocol, counting the uploads it takes.
type stagingStore struct {
	mu    sync.Mutex
	files map[string][]byte
	puts  int
}

func (s *stagingStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	digest := strings.TrimPrefix(r.URL.Path, "/staging/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		if _, ok := s.files[digest]; !ok {
			w.WriteHeader(http.StatusNotFound)
		}
	case http.MethodPut:
		s.puts++
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != digest {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"RemoteException":{"message":"the upload's SHA-256 differs"}}`)
			return
		}
		s.files[digest] = b
		w.WriteHeader(http.StatusCreated)
	}
}

func TestStageSendsAFileOnce(t *testing.T) {
	store := &stagingStore{files: map[string][]byte{}}
	srv, c := newStagingServer(t, store)
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, []byte("a job program"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("a job program"))
	digest := hex.EncodeToString(sum[:])
	for i := 0; i < 2; i++ {
		lr, err := c.Stage(context.Background(), srv.URL+"/staging/", path, "job", true)
		if err != nil {
			t.Fatal(err)
		}
		if lr.Name != "job" || lr.Sha256 != digest || lr.Size != 13 || !lr.Executable || lr.Url != srv.URL+"/staging/"+digest {
			t.Fatalf("local resource %+v", lr)
		}
	}
	if store.puts != 1 {
		t.Errorf("%d uploads of one file, want 1", store.puts)
	}
}

func TestStageSaysWhatIsWrong(t *testing.T) {
	srv, c := newStagingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusInsufficientStorage)
		_, _ = io.WriteString(w, `{"RemoteException":{"message":"the disk is full"}}`)
	}))
	if _, err := c.Stage(context.Background(), "", "/bin/true", "x", true); err == nil || !strings.Contains(err.Error(), "--http-addr") {
		t.Errorf("no staging URL: %v", err)
	}
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stage(context.Background(), srv.URL+"/staging/", path, "x", false); err == nil || !strings.Contains(err.Error(), "the disk is full") {
		t.Errorf("a refused upload: %v", err)
	}
}
