package jobmanager

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
)

// blobStore keeps job artifacts by their SHA-256.
type blobStore struct {
	dir string
}

// maxBlob bounds an upload.
const maxBlob = 2 << 30

func newBlobStore(dir string) (*blobStore, error) {
	d := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	return &blobStore{dir: d}, nil
}

func validDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

func (b *blobStore) has(digest string) bool {
	if !validDigest(digest) {
		return false
	}
	_, err := os.Stat(filepath.Join(b.dir, digest))
	return err == nil
}

// adopt makes a file on this machine, whose digest its owner has
// checked, the blob key names; only its size is checked here.
func (b *blobStore) adopt(key *flinkpb.BlobKey, path string) error {
	if key == nil || !validDigest(key.Sha256) {
		return errors.New("a blob is named by its SHA-256")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if st.Size() != key.Size {
		return fmt.Errorf("%s has %d bytes, not the %d its key says", path, st.Size(), key.Size)
	}
	if b.has(key.Sha256) {
		return nil
	}
	return os.Symlink(abs, filepath.Join(b.dir, key.Sha256))
}

// put stores an upload, refusing one whose digest or size differs from
// what its first chunk announced.
func (b *blobStore) put(s flinkpb.Dispatcher_UploadBlobServer) (*flinkpb.BlobKey, error) {
	first, err := s.Recv()
	if err != nil {
		return nil, err
	}
	key := first.Key
	if key == nil || !validDigest(key.Sha256) || key.Size < 0 || key.Size > maxBlob {
		return nil, status.Error(codes.InvalidArgument, "an upload starts with the blob's SHA-256 and size (at most 2 GiB)")
	}
	if b.has(key.Sha256) {
		return key, nil
	}
	f, err := os.CreateTemp(b.dir, "upload-")
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	var n int64
	for chunk := first; ; {
		n += int64(len(chunk.Data))
		if n > key.Size {
			return nil, status.Errorf(codes.InvalidArgument, "the upload is longer than the %d bytes it announced", key.Size)
		}
		h.Write(chunk.Data)
		if _, err := f.Write(chunk.Data); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if chunk, err = s.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != key.Sha256 || n != key.Size {
		return nil, status.Errorf(codes.InvalidArgument, "the upload has %d bytes and digest %s, not %d bytes and %s as announced", n, got, key.Size, key.Sha256)
	}
	if err := f.Close(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Rename(f.Name(), filepath.Join(b.dir, key.Sha256)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return key, nil
}

// collect removes the blobs not in use that are older than before.
func (b *blobStore) collect(inUse map[string]bool, before time.Time) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if inUse[e.Name()] || !validDigest(e.Name()) {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(b.dir, e.Name()))
		}
	}
}

func (b *blobStore) get(key *flinkpb.BlobKey, s flinkpb.Dispatcher_DownloadBlobServer) error {
	if !b.has(key.Sha256) {
		return status.Errorf(codes.NotFound, "blob %s not found", key.Sha256)
	}
	f, err := os.Open(filepath.Join(b.dir, key.Sha256))
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := s.Send(&flinkpb.BlobChunk{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
	}
}
