package nm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/token"
)

// The NM starts a container only with a token of the RM's keys for that
// container on this node, once, before its expiry; used tokens are
// forgotten once they could no longer verify anyway.
func TestContainerTokensAreCheckedAndTakenOnce(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	key := token.NewKey(7, now)
	tokens := newContainerTokens()
	const node = "10.0.0.1:8041"
	app := "application_1700000000000_0001"
	cid := yarnpb.ContainerID(1, app, 1, 2)
	res := &yarnpb.Resource{MemoryMb: 512, Vcores: 1}
	mint := func(k *yarnpb.MasterKey, mut func(*yarnpb.ContainerTokenIdentifier)) []byte {
		id := &yarnpb.ContainerTokenIdentifier{ContainerId: cid, NodeId: node, ApplicationId: app, User: "alice", Resource: res, ExpiryMs: now.Add(10 * time.Minute).UnixMilli()}
		if mut != nil {
			mut(id)
		}
		tok, err := token.Container(k, id)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	req := func(tok []byte) *yarnpb.StartContainerRequest {
		return &yarnpb.StartContainerRequest{ContainerId: cid, ApplicationId: app, User: "alice", Resource: &yarnpb.Resource{MemoryMb: 512, Vcores: 1}, Token: tok}
	}
	if err := tokens.check(req(mint(key, nil)), node, now); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("before the RM sent keys: %v, want unavailable", err)
	}
	tokens.setKeys([]*yarnpb.MasterKey{key})

	for name, tc := range map[string]struct {
		req  *yarnpb.StartContainerRequest
		at   time.Time
		want string
	}{
		"no token":               {req(nil), now, "no container token"},
		"a key the RM never had": {req(mint(token.NewKey(7, now), nil)), now, "signature does not verify"},
		"another key id":         {req(mint(token.NewKey(8, now), nil)), now, "unknown or retired"},
		"for another node":       {req(mint(key, func(id *yarnpb.ContainerTokenIdentifier) { id.NodeId = "10.0.0.2:8041" })), now, "for node 10.0.0.2:8041"},
		"for another container":  {req(mint(key, func(id *yarnpb.ContainerTokenIdentifier) { id.ContainerId = yarnpb.ContainerID(1, app, 1, 3) })), now, "not " + cid},
		"for another user":       {req(mint(key, func(id *yarnpb.ContainerTokenIdentifier) { id.User = "root" })), now, "for user root"},
		"for less than is asked": {req(mint(key, func(id *yarnpb.ContainerTokenIdentifier) { id.Resource = &yarnpb.Resource{MemoryMb: 64, Vcores: 1} })), now, "its token allows 64 MB"},
		"expired":                {req(mint(key, nil)), now.Add(10 * time.Minute), "expired"},
		"truncated":              {req(mint(key, nil)[:20]), now, "malformed"},
		"another kind of token":  {req(func() []byte { b, _ := token.AM(key, "appattempt_1700000000000_0001_000001"); return b }()), now, "malformed"},
	} {
		err := tokens.check(tc.req, node, tc.at)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	good := mint(key, nil)
	r := req(good)
	r.User = ""
	if err := tokens.check(r, node, now); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	if r.User != "alice" {
		t.Fatalf("the request runs as %q, want the token's user alice", r.User)
	}
	if err := tokens.check(req(good), node, now.Add(time.Second)); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("a replayed token: %v, want refused", err)
	}
	tokens.sweep(now.Add(5 * time.Minute))
	if len(tokens.used) != 1 {
		t.Fatalf("a live token was forgotten: %v", tokens)
	}
	tokens.sweep(now.Add(10 * time.Minute))
	if len(tokens.used) != 0 {
		t.Fatalf("an expired token is still remembered: %v", tokens)
	}
	if err := tokens.check(req(good), node, now.Add(10*time.Minute)); err == nil {
		t.Fatal("a replayed token after the sweep was taken")
	}
}
