package rm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

func put(t *testing.T, hc *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStagingStoresChecksServesAndCollects(t *testing.T) {
	s, c := testServer(t, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	base := "https://" + s.HTTPAddr() + "/staging/"
	hc := rmclient.HTTPClient(c.TLS())
	file := []byte("a job program")
	sum := sha256.Sum256(file)
	digest := hex.EncodeToString(sum[:])

	if code, body := put(t, hc, base+digest, []byte("something else")); code != http.StatusBadRequest || !strings.Contains(body, "SHA-256") {
		t.Fatalf("an upload that does not match its digest: %d %s", code, body)
	}
	if code, _ := put(t, hc, base+"not-a-digest", file); code != http.StatusBadRequest {
		t.Fatalf("a path that is not a digest: %d", code)
	}
	if code, body := put(t, hc, base+digest, file); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, body)
	}
	if code, _ := put(t, hc, base+digest, file); code != http.StatusOK {
		t.Fatalf("a second upload of the same file: %d", code)
	}
	resp, err := hc.Get(base + digest)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, file) {
		t.Fatalf("GET: %s %q", resp.Status, got)
	}
	if resp, _ := hc.Head(base + strings.Repeat("0", 64)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of nothing: %s", resp.Status)
	}

	// A second file that no application names.
	orphan := []byte("left behind")
	osum := sha256.Sum256(orphan)
	odigest := hex.EncodeToString(osum[:])
	if code, _ := put(t, hc, base+odigest, orphan); code != http.StatusCreated {
		t.Fatal(code)
	}
	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId,
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}, LocalResources: []*yarnpb.LocalResource{
			{Name: "job", Url: base + digest, Sha256: digest},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the submission applied", func() bool { return s.State().Snapshot().App(nil, app.ApplicationId) != nil })

	live := referenced(s.State().Snapshot())
	if !live[digest] || live[odigest] {
		t.Fatalf("referenced = %v", live)
	}
	if n := s.staging.collect(live, time.Now()); n != 0 {
		t.Fatalf("collected %d files within the grace period", n)
	}
	if n := s.staging.collect(live, time.Now().Add(stagingGrace+time.Second)); n != 1 {
		t.Fatalf("collected %d files past the grace period, want the orphan", n)
	}
	if _, err := os.Stat(filepath.Join(s.staging.dir, digest)); err != nil {
		t.Fatalf("the running application's file was removed: %v", err)
	}
	if _, err := c.Kill(ctx, app.ApplicationId, "test"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the application killed", func() bool {
		a := s.State().Snapshot().App(nil, app.ApplicationId)
		return a != nil && a.Terminal()
	})
	if n := s.staging.collect(referenced(s.State().Snapshot()), time.Now().Add(stagingGrace+time.Second)); n != 1 {
		t.Fatalf("collected %d files after the application ended, want its file", n)
	}
}

// A user's uploads stay within the staging quota, counting what is stored
// and what is in flight; another user's quota is their own, and a file
// that is collected frees its uploader's room.
func TestStagingQuotaBoundsEachUser(t *testing.T) {
	s, c := testServer(t, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0"; cfg.StagingQuota = 100 })
	base := "https://" + s.HTTPAddr() + "/staging/"
	hc := rmclient.HTTPClient(c.TLS())
	file := func(n int, fill byte) ([]byte, string) {
		b := bytes.Repeat([]byte{fill}, n)
		sum := sha256.Sum256(b)
		return b, hex.EncodeToString(sum[:])
	}
	a, ad := file(60, 'a')
	if code, body := put(t, hc, base+ad, a); code != http.StatusCreated {
		t.Fatalf("60 of 100 bytes: %d %s", code, body)
	}
	b, bd := file(60, 'b')
	if code, body := put(t, hc, base+bd, b); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "staging quota") {
		t.Fatalf("120 of 100 bytes: %d %s, want 413 naming the quota", code, body)
	}
	if code, _ := put(t, hc, base+ad, a); code != http.StatusOK {
		t.Fatalf("the same file again costs nothing: %d", code)
	}
	bob := rmclient.HTTPClient(bundleFor(t, s, tlstest.User("bob")))
	if code, body := put(t, bob, base+bd, b); code != http.StatusCreated {
		t.Fatalf("another user's 60 bytes: %d %s", code, body)
	}
	// Streamed without a length, an upload cannot be booked.
	cc, cd := file(10, 'c')
	req, _ := http.NewRequest(http.MethodPut, base+cd, io.NopCloser(bytes.NewReader(cc)))
	req.ContentLength = -1
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusLengthRequired {
		t.Fatalf("an upload without Content-Length: %v %v", resp, err)
	}
	if n := s.staging.collect(nil, time.Now().Add(time.Hour)); n != 2 {
		t.Fatalf("collected %d files, want 2", n)
	}
	if code, body := put(t, hc, base+bd, b); code != http.StatusCreated {
		t.Fatalf("after collection the room is back: %d %s", code, body)
	}
}
