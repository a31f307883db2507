package nm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/tlsutil"
)

// Who may call what on a node. The TLS handshake has checked that the
// caller holds a certificate of the cluster CA; these checks decide what
// that identity may do with the containers a call names:
//   - the ResourceManager (a server certificate) may do anything;
//   - an application's containers (its app certificate, which its AM
//     holds) may start, stop, inspect and read the logs of containers of
//     that application only;
//   - a user may inspect, stop and read the logs of containers of their
//     own applications, an admin of any.
const cmSvc = "/loom.yarn.ContainerManagerService/"

var nodeMethodKinds = map[string][]string{
	cmSvc + "StartContainers":      {tlsutil.KindServer, tlsutil.KindApp},
	cmSvc + "StopContainers":       {tlsutil.KindServer, tlsutil.KindApp, tlsutil.KindUser},
	cmSvc + "GetContainerStatuses": {tlsutil.KindServer, tlsutil.KindApp, tlsutil.KindUser},
	cmSvc + "ListContainerLogs":    {tlsutil.KindServer, tlsutil.KindApp, tlsutil.KindUser},
	cmSvc + "ReadContainerLog":     {tlsutil.KindServer, tlsutil.KindApp, tlsutil.KindUser},
}

func (n *NodeManager) authorize(ctx context.Context, method string) (context.Context, error) {
	id, ok := tlsutil.FromContext(ctx)
	if !ok {
		return nil, errdefs.Unauthenticated("no client certificate of this cluster was presented")
	}
	kinds, ok := nodeMethodKinds[method]
	if !ok || !slices.Contains(kinds, id.Kind) {
		return nil, errdefs.PermissionDenied("%s may not call %s on a NodeManager", id, method[strings.LastIndex(method, "/")+1:])
	}
	return tlsutil.WithIdentity(ctx, id), nil
}

func caller(ctx context.Context) tlsutil.Identity {
	id, _ := tlsutil.FromContext(ctx)
	return id
}

// isAdmin reports whether id is one of the cluster's admins.
func (n *NodeManager) isAdmin(id tlsutil.Identity) bool { return tlsutil.IsAdmin(n.cfg.Admins, id) }

// mayTouch checks that the caller may act on a container of appID run
// for user (user is "" when the node does not know it).
func (n *NodeManager) mayTouch(ctx context.Context, appID, user string) error {
	id := caller(ctx)
	switch id.Kind {
	case tlsutil.KindServer:
		return nil
	case tlsutil.KindApp:
		if id.Name == appID {
			return nil
		}
	case tlsutil.KindUser:
		if (user != "" && id.Name == user) || n.isAdmin(id) {
			return nil
		}
	}
	return errdefs.PermissionDenied("%s may not act on the containers of application %s", id, appID)
}

// mayTouchContainer checks that the caller may act on container id: the
// user is the running container's, else the one kept beside its logs.
func (n *NodeManager) mayTouchContainer(ctx context.Context, id string) error {
	appID, err := yarnpb.AppIDOfContainer(id)
	if err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	user := n.appOwner(appID)
	if c := n.exec.get(id); c != nil {
		user = c.user
	}
	return n.mayTouch(ctx, appID, user)
}

// appOwner is the user an application's containers ran for on this node,
// or "" when none did.
func (n *NodeManager) appOwner(appID string) string {
	b, err := os.ReadFile(filepath.Join(n.cfg.Dir, "logs", appID, ownerFile))
	if err != nil {
		return ""
	}
	return string(b)
}
