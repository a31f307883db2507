package rm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/loom-project/loom/rm/rmclient"
)

// Every replica holds every staged file: the replica that takes an upload
// copies it to the others before it answers, so an application whose
// files were staged on a leader that then failed still finds them, at the
// next leader, which NodeManagers fetch from when the replica a URL names
// does not answer.

// stagingPeers are the other replicas' staging URLs, by raft server id,
// learnt from their ServiceState and kept while they are in the raft
// configuration.
type stagingPeers struct {
	mu   sync.Mutex
	urls map[string]string
}

// peerStagingURLs lists the staging URLs of the other replicas that
// answer.
func (s *Server) peerStagingURLs(ctx context.Context) []string {
	ids := s.rmAddrs()
	s.stagingPeers.mu.Lock()
	if s.stagingPeers.urls == nil {
		s.stagingPeers.urls = map[string]string{}
	}
	for id := range s.stagingPeers.urls {
		if !slices.Contains(ids, id) {
			delete(s.stagingPeers.urls, id)
		}
	}
	known := make(map[string]string, len(s.stagingPeers.urls))
	for id, u := range s.stagingPeers.urls {
		known[id] = u
	}
	s.stagingPeers.mu.Unlock()
	var out []string
	for _, id := range ids {
		if id == s.cfg.AdvertiseAddr {
			continue
		}
		if u := known[id]; u != "" {
			out = append(out, u)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := s.askPeer(actx, id)
		cancel()
		if err != nil || st.StagingUrl == "" {
			continue
		}
		s.stagingPeers.mu.Lock()
		s.stagingPeers.urls[id] = st.StagingUrl
		s.stagingPeers.mu.Unlock()
		out = append(out, st.StagingUrl)
	}
	return out
}

// replicateStaged copies a file staged here to every other replica that
// answers, at once, and says which did not take it.
func (s *Server) replicateStaged(digest, path string, size int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	peers := s.peerStagingURLs(ctx)
	if len(peers) == 0 {
		return
	}
	client := rmclient.HTTPClient(s.cfg.TLS)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for _, base := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := putStaged(ctx, client, base+digest, path, size); err != nil {
				s.logger.Warn("copying a staged file to a replica failed", "sha256", digest, "replica", base, "error", err)
			}
		}()
	}
	wg.Wait()
}

func putStaged(ctx context.Context, client *http.Client, url, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return nil
}
