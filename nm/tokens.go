package nm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/token"
)

// containerTokens checks the ContainerToken of every container a caller
// asks the NM to start, with the master keys the RM sends in its
// registration and heartbeat answers, and remembers each token used until
// it expires, so that no token starts a second container or the same one
// twice.
type containerTokens struct {
	mu   sync.Mutex
	keys []*yarnpb.MasterKey
	// used are the containers started with a token, by id, with its
	// expiry (unix ms): a replayed token is refused until then, and
	// after that it is refused as expired.
	used map[string]int64
}

func newContainerTokens() *containerTokens {
	return &containerTokens{used: map[string]int64{}}
}

// setKeys replaces the master keys with the RM's.
func (t *containerTokens) setKeys(keys []*yarnpb.MasterKey) {
	if len(keys) == 0 {
		return
	}
	t.mu.Lock()
	t.keys = keys
	t.mu.Unlock()
}

// check verifies req's token for this node and takes it: the request must
// name the token's container, application, user and resources. It sets
// req's user to the token's.
func (t *containerTokens) check(req *yarnpb.StartContainerRequest, nodeID string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) == 0 {
		return errdefs.Unavailable("this NodeManager has no master keys from the ResourceManager yet; try again in a moment")
	}
	id, err := token.VerifyContainer(t.keys, req.Token, now)
	if err != nil {
		if errors.Is(err, token.ErrMissing) {
			return errdefs.Unauthenticated("container %s: no container token; start the containers the ResourceManager allocated, with the token that came with each", req.ContainerId)
		}
		return errdefs.Unauthenticated("container %s: %v", req.ContainerId, err)
	}
	appID, _ := yarnpb.AppIDOfContainer(req.ContainerId)
	switch {
	case id.ContainerId != req.ContainerId:
		return errdefs.PermissionDenied("the container token is %s's, not %s's", id.ContainerId, req.ContainerId)
	case id.NodeId != nodeID:
		return errdefs.PermissionDenied("the token of container %s is for node %s, not this node %s", req.ContainerId, id.NodeId, nodeID)
	case id.ApplicationId != appID || (req.ApplicationId != "" && req.ApplicationId != appID):
		return errdefs.PermissionDenied("the token of container %s is for application %s", req.ContainerId, id.ApplicationId)
	case req.User != "" && req.User != id.User:
		return errdefs.PermissionDenied("the token of container %s is for user %s, not %s", req.ContainerId, id.User, req.User)
	case req.Resource != nil && !proto.Equal(req.Resource, id.Resource):
		return errdefs.PermissionDenied("container %s asks for %d MB and %d vcores; its token allows %d MB and %d vcores",
			req.ContainerId, req.Resource.MemoryMb, req.Resource.Vcores, id.Resource.GetMemoryMb(), id.Resource.GetVcores())
	}
	if _, ok := t.used[id.ContainerId]; ok {
		return errdefs.PermissionDenied("the token of container %s was used already: a container token starts its container once", id.ContainerId)
	}
	t.used[id.ContainerId] = id.ExpiryMs
	req.User, req.Resource = id.User, id.Resource
	return nil
}

// sweep forgets the used tokens that have expired.
func (t *containerTokens) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, exp := range t.used {
		if now.UnixMilli() >= exp {
			delete(t.used, c)
		}
	}
}

func (t *containerTokens) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%d keys, %d used tokens", len(t.keys), len(t.used))
}
