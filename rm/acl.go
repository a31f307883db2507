package rm

import (
	"context"
	"net/url"
	"slices"
	"strings"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
)

// Who may call what. Every call is authenticated by the TLS handshake (a
// client certificate of the cluster CA); the interceptors below resolve
// its identity once, at the edge, refuse kinds that have no business with
// a method, and leave the checks on the object a call names (whose
// application, which node) to the handler.
const (
	clientSvc  = "/loom.yarn.ClientService/"
	amSvc      = "/loom.yarn.ApplicationMasterService/"
	trackerSvc = "/loom.yarn.ResourceTrackerService/"
	adminSvc   = "/loom.yarn.AdminService/"
)

var (
	users      = []string{tlsutil.KindUser}
	usersApps  = []string{tlsutil.KindUser, tlsutil.KindApp}
	apps       = []string{tlsutil.KindApp}
	nodes      = []string{tlsutil.KindNode}
	servers    = []string{tlsutil.KindServer}
	methodACLs = map[string]methodACL{
		clientSvc + "NewApplication":       {kinds: users},
		clientSvc + "SubmitApplication":    {kinds: users},
		clientSvc + "GetApplicationReport": {kinds: usersApps},
		clientSvc + "ListApplications":     {kinds: users},
		clientSvc + "KillApplication":      {kinds: usersApps},
		clientSvc + "MoveApplication":      {kinds: users},
		clientSvc + "ClusterMetrics":       {kinds: usersApps},
		clientSvc + "ListNodes":            {kinds: usersApps},
		clientSvc + "QueueInfo":            {kinds: usersApps},

		amSvc + "RegisterApplicationMaster": {kinds: apps},
		amSvc + "Allocate":                  {kinds: apps},
		amSvc + "FinishApplicationMaster":   {kinds: apps},

		trackerSvc + "RegisterNodeManager":   {kinds: nodes},
		trackerSvc + "NodeHeartbeat":         {kinds: nodes},
		trackerSvc + "NodeHeartbeats":        {kinds: nodes},
		trackerSvc + "UnRegisterNodeManager": {kinds: nodes},

		adminSvc + "Decommission":   {kinds: users, admin: true},
		adminSvc + "Recommission":   {kinds: users, admin: true},
		adminSvc + "RefreshQueues":  {kinds: users, admin: true},
		adminSvc + "ServiceState":   {kinds: []string{tlsutil.KindUser, tlsutil.KindServer}},
		adminSvc + "AddRaftPeer":    {kinds: servers},
		adminSvc + "RemoveRaftPeer": {kinds: users, admin: true},
	}
)

type methodACL struct {
	kinds []string
	admin bool
}

// authorize resolves the caller of method and checks the method's ACL.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	id, ok := tlsutil.FromContext(ctx)
	if !ok {
		return nil, errdefs.Unauthenticated("no client certificate of this cluster was presented")
	}
	acl, ok := methodACLs[method]
	if !ok {
		return nil, errdefs.PermissionDenied("%s may not call %s", id, method)
	}
	if !slices.Contains(acl.kinds, id.Kind) {
		return nil, errdefs.PermissionDenied("%s may not call %s (only %s may)", id, method[strings.LastIndex(method, "/")+1:], strings.Join(acl.kinds, " or "))
	}
	if acl.admin && !s.isAdmin(id) {
		return nil, errdefs.PermissionDenied("%s is not an admin of this cluster; %s needs an admin (see the ResourceManager's --admins)", id, method[strings.LastIndex(method, "/")+1:])
	}
	return tlsutil.WithIdentity(ctx, id), nil
}

// isAdmin reports whether id is one of the cluster's admins.
func (s *Server) isAdmin(id tlsutil.Identity) bool { return tlsutil.IsAdmin(s.cfg.Admins, id) }

// caller is the identity the interceptor resolved.
func caller(ctx context.Context) tlsutil.Identity {
	id, _ := tlsutil.FromContext(ctx)
	return id
}

// mayActOnApp checks that the caller may change app: its owner, an admin
// of the cluster or of the application's queue, or the application's own
// containers.
func (s *Server) mayActOnApp(ctx context.Context, app *state.Application) error {
	id := caller(ctx)
	switch {
	case id.Kind == tlsutil.KindUser && (id.Name == app.User || s.isAdmin(id)):
		return nil
	case id.Kind == tlsutil.KindUser && s.mayAdministerQueue(ctx, s.queueTree(), app.Queue):
		return nil
	case id.Kind == tlsutil.KindApp && id.Name == app.ID:
		return nil
	}
	return errdefs.PermissionDenied("%s may not change application %s of user %s in queue %s (only its owner, an admin, or an administrator of the queue may)", id, app.ID, app.User, app.Queue)
}

// mayReadApp checks that the caller may read app: any user (YARN's view
// ACL is open by default), or the application's own containers.
func mayReadApp(ctx context.Context, appID string) error {
	id := caller(ctx)
	if id.Kind == tlsutil.KindApp && id.Name != appID {
		return errdefs.PermissionDenied("%s may not read application %s", id, appID)
	}
	return nil
}

// trackingURL is an application's tracking URL as its owner (or an admin,
// or its own containers) sees it, or without its access token for anyone
// else: an application's web interface may carry the token that lets its
// owner's browser act on it (the JobManager's dashboard link does), and
// every user may read every report.
func trackingURL(raw string, owner bool) string {
	if owner || raw == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	q := u.Query()
	if !q.Has("token") {
		return raw
	}
	q.Del("token")
	u.RawQuery = q.Encode()
	return u.String()
}

// isAttemptOfCaller checks that attemptID belongs to the application whose
// certificate the caller holds.
func isAttemptOfCaller(ctx context.Context, appID string) error {
	id := caller(ctx)
	if id.Kind != tlsutil.KindApp || id.Name != appID {
		return errdefs.PermissionDenied("%s is not an ApplicationMaster of %s", id, appID)
	}
	return nil
}

// checkIssuedAppID checks that id is one NewApplication handed out: by
// this leader, or by one of the few before it (a client that got its id
// from a leader that then failed submits it to the next). Ids of this
// leadership are checked exactly, so a made-up one never takes an id the
// leader hands out later; an earlier leadership's are checked by their
// timestamp, as that leader's count died with it: a made-up one can at
// worst take an id that leader issued, whose submission then fails
// AlreadyExists and asks for a new one.
func (s *Server) checkIssuedAppID(id string) error {
	ts, seq, err := yarnpb.ParseAppID(id)
	if err != nil {
		return errdefs.InvalidArgument("%v; ask for one with NewApplication", err)
	}
	if seq > 0 && ts == s.clusterTS.Load() && seq <= s.appSeq.Load() {
		return nil
	}
	if seq > 0 && ts != s.clusterTS.Load() && slices.Contains(s.State().Snapshot().Meta().Earlier, ts) {
		return nil
	}
	return errdefs.InvalidArgument("application id %s was not issued by this ResourceManager; ask for a new one with NewApplication", id)
}
