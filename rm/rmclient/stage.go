package rmclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Digest returns the SHA-256 of a file, in hex, and its size.
func Digest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Stage ships a file to the RM's staging store (stagingURL, as
// NewApplication returns it) unless it is there already, and returns the
// local resource that names it as name in a container's working
// directory. NodeManagers fetch it from the store and check its digest.
func (c *Client) Stage(ctx context.Context, stagingURL, path, name string, executable bool) (*yarnpb.LocalResource, error) {
	if stagingURL == "" {
		return nil, errors.New("the ResourceManager serves no staging store (it runs without --http-addr); start it with an HTTP address to ship files to containers")
	}
	digest, size, err := Digest(path)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(stagingURL, "/") + "/" + digest
	lr := &yarnpb.LocalResource{Name: name, Url: u, Size: size, Sha256: digest, Visibility: yarnpb.Visibility_APPLICATION, Executable: executable}
	// A HEAD finds a file staged before and keeps it for this submission.
	head, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(head)
	if err != nil {
		return nil, fmt.Errorf("reaching the staging store at %s: %w", stagingURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return lr, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, u, f)
	if err != nil {
		return nil, err
	}
	put.ContentLength = size
	resp, err = c.http.Do(put)
	if err != nil {
		return nil, fmt.Errorf("staging %s at %s: %w", path, stagingURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("staging %s: %s", path, remoteMessage(resp))
	}
	return lr, nil
}

// remoteMessage is the message of an RM HTTP error body, or its status.
func remoteMessage(resp *http.Response) string {
	var body struct {
		RemoteException struct{ Message string } `json:"RemoteException"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil && body.RemoteException.Message != "" {
		return body.RemoteException.Message
	}
	return resp.Status
}
