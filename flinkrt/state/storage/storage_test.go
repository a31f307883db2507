package storage_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/state/storage/s3test"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"/tmp/cp", "/tmp/cp", ""},
		{"/tmp/cp/../cp2/", "/tmp/cp2", ""},
		{"file:///tmp/cp", "/tmp/cp", ""},
		{"file:/tmp/cp", "/tmp/cp", ""},
		{"s3://bucket/a/b/", "s3://bucket/a/b", ""},
		{"s3a://bucket//a/./b", "s3://bucket/a/b", ""},
		{"S3P://bucket", "s3://bucket", ""},
		{"s3://bucket/../../x", "s3://bucket/x", ""},
		{"relative/cp", "", "want an absolute path"},
		{"", "", "want an absolute path"},
		{"hdfs://nn/cp", "", "want an absolute path, file:///path or s3://bucket/prefix"},
		{"s3://Bucket/x", "", "bucket name"},
		{"s3://ab/x", "", "3 to 63"},
		{"s3://-bucket/x", "", "bucket name"},
		{"s3:///x", "", "bucket name"},
	} {
		got, err := storage.Normalize(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Normalize(%q) = %q, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if got := storage.Join("s3://b/cp", "job", "chk-1"); got != "s3://b/cp/job/chk-1" {
		t.Errorf("Join = %q", got)
	}
	if got := storage.Join("s3://bkt", "chk-1"); got != "s3://bkt/chk-1" {
		t.Errorf("Join of a bucket = %q", got)
	}
	if got, base := storage.Dir("s3://b/cp/chk-1/_metadata"), storage.Base("s3://b/cp/chk-1/_metadata"); got != "s3://b/cp/chk-1" || base != "_metadata" {
		t.Errorf("Dir, Base = %q, %q", got, base)
	}
}

// storageContract is what checkpoints rely on of every kind of storage.
func storageContract(t *testing.T, root string) {
	ctx := context.Background()
	chk1 := storage.Join(root, "job", "chk-1")
	files := map[string][]byte{"op-0": []byte("state of subtask 0"), "op-1": {}, "_metadata": []byte(`{"version":1}`)}
	if err := storage.WriteFiles(ctx, chk1, files); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteFiles(ctx, storage.Join(root, "job", "chk-2"), map[string][]byte{"op-0": []byte("newer")}); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := storage.ReadFile(ctx, storage.Join(chk1, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	// A file written again is replaced whole.
	if err := storage.WriteFiles(ctx, chk1, map[string][]byte{"op-0": []byte("again")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := storage.ReadFile(ctx, storage.Join(chk1, "op-0")); string(got) != "again" {
		t.Errorf("rewritten file reads %q", got)
	}
	_, err := storage.ReadFile(ctx, storage.Join(chk1, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("reading a missing file: %v; want fs.ErrNotExist naming it", err)
	}
	if ok, err := storage.Exists(ctx, storage.Join(chk1, "_metadata")); !ok || err != nil {
		t.Errorf("Exists(_metadata) = %v, %v", ok, err)
	}
	names, err := storage.List(ctx, storage.Join(root, "job"))
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"chk-1", "chk-2"}) {
		t.Errorf("List(job) = %v, %v; want [chk-1 chk-2]", names, err)
	}
	names, err = storage.List(ctx, chk1)
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"_metadata", "op-0", "op-1"}) {
		t.Errorf("List(chk-1) = %v, %v", names, err)
	}
	if names, err := storage.List(ctx, storage.Join(root, "nothing-here")); err != nil || len(names) != 0 {
		t.Errorf("List of a missing directory = %v, %v; want nothing", names, err)
	}
	if err := storage.RemoveAll(ctx, chk1); err != nil {
		t.Fatal(err)
	}
	if ok, err := storage.Exists(ctx, storage.Join(chk1, "_metadata")); ok || err != nil {
		t.Errorf("after RemoveAll, Exists(_metadata) = %v, %v", ok, err)
	}
	if got, err := storage.ReadFile(ctx, storage.Join(root, "job", "chk-2", "op-0")); err != nil || string(got) != "newer" {
		t.Errorf("RemoveAll of chk-1 touched chk-2: %q, %v", got, err)
	}
	if err := storage.WriteFiles(ctx, chk1, map[string][]byte{"../escape": nil}); err == nil {
		t.Error("a file name with a path was written")
	}
}

func TestLocalStorage(t *testing.T) {
	storageContract(t, t.TempDir())
}

// TestS3Storage runs one SeaweedFS (it takes seconds to start) for all
// that is checked of the object store.
func TestS3Storage(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	storageContract(t, srv.Bucket(t, "checkpoints")+"/prefix")
	t.Run("retries", func(t *testing.T) { testS3Retries(t, srv) })

	ctx := context.Background()
	t.Run("a missing bucket", func(t *testing.T) {
		_, err := storage.ReadFile(ctx, "s3://no-such-bucket/x/_metadata")
		if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
			t.Errorf("reading from a missing bucket: %v", err)
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv(storage.EnvSecretAccessKey, "not-the-secret")
		err := storage.WriteFiles(ctx, "s3://checkpoints/denied", map[string][]byte{"f": []byte("x")})
		if err == nil || !strings.Contains(err.Error(), storage.EnvSecretAccessKey) {
			t.Errorf("writing with a wrong secret: %v; want an error that names %s", err, storage.EnvSecretAccessKey)
		}
	})
	t.Run("credentials given to the container", func(t *testing.T) {
		dir := t.TempDir()
		cfg := `{"endpoint":"` + srv.Endpoint + `","access_key_id":"` + s3test.AccessKey + `","secret_access_key":"` + s3test.SecretKey + `"}`
		if err := storage.WriteFiles(ctx, dir, map[string][]byte{storage.CredentialFile: []byte(cfg)}); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{storage.EnvEndpoint, storage.EnvAccessKeyID, storage.EnvSecretAccessKey} {
			t.Setenv(k, "")
		}
		t.Setenv("LOOM_CREDENTIALS", dir)
		if err := storage.WriteFiles(ctx, "s3://checkpoints/given", map[string][]byte{"f": []byte("x")}); err != nil {
			t.Errorf("writing with the container's credentials: %v", err)
		}
	})
}

// testS3Retries puts a gateway that fails the first tries of every
// request with 503 (as a store does under load) in front of the server:
// checkpoint files are still written and read.
func testS3Retries(t *testing.T, srv *s3test.Server) {
	bucket := srv.Bucket(t, "flaky")
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	tries := map[string]int{}
	failed := 0
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.String()
		mu.Lock()
		tries[key]++
		n := tries[key]
		if n <= 2 {
			failed++
		}
		mu.Unlock()
		if n <= 2 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	t.Setenv(storage.EnvEndpoint, front.URL)

	ctx := context.Background()
	dir := bucket + "/job/chk-7"
	if err := storage.WriteFiles(ctx, dir, map[string][]byte{"op-0": []byte("a"), "op-1": []byte("b"), "_metadata": []byte("{}")}); err != nil {
		t.Fatalf("writing through a store that fails twice: %v", err)
	}
	got, err := storage.ReadFile(ctx, dir+"/op-1")
	if err != nil || string(got) != "b" {
		t.Fatalf("reading through a store that fails twice: %q, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if failed < 8 {
		t.Errorf("the gateway failed %d requests; want every request failed twice first", failed)
	}
}
