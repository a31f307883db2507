package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/nm/nmclient"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
	"github.com/loom-project/loom/token"
)

// signed issues a certificate of the cluster's CA (which `cluster up` keeps
// in its directory) for id.
func (c *cluster) signed(id tlsutil.Identity) *tlsutil.Bundle {
	c.t.Helper()
	files := tlsutil.ClusterFiles{Dir: filepath.Join(c.dir, "tls")}
	ca, err := tlsutil.LoadCA(files.CA(), files.CAKey())
	if err != nil {
		c.t.Fatal(err)
	}
	iss, err := ca.Sign(tlsutil.CertRequest{Identity: id})
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := tlsutil.FromPEM(ca.PEM, iss.CertPEM, iss.KeyPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// Every probe of an outsider, and of a user or an application acting
// beyond its rights, is refused with a clear error; the cluster then
// still runs a per-job wordcount correctly.
func TestSecurityProbesAreRefused(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	victim := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "1", "--memory-mb", "64", "--", "sleep", marker()))
	var victimContainer, node string
	waitFor(t, 30*time.Second, "the victim's container RUNNING", func() (bool, string) {
		a := c.app(victim)
		for _, ct := range a.Containers {
			if !ct.IsAM && ct.State == "RUNNING" {
				victimContainer, node = ct.ID, ct.NodeID
				return true, ""
			}
		}
		return false, a.State
	})

	dial := func(addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	admin := c.signed(tlstest.User("root", "admins"))
	t.Run("outsiders", func(t *testing.T) {
		other := tlstest.New(t).Bundle(tlstest.User("root", "admins"))
		noCert := &tls.Config{RootCAs: admin.Pool, ServerName: tlsutil.ServerName, MinVersion: tls.VersionTLS13}
		for name, creds := range map[string]credentials.TransportCredentials{
			"plaintext":                   insecure.NewCredentials(),
			"TLS without a certificate":   credentials.NewTLS(noCert),
			"a certificate of another CA": credentials.NewTLS(other.ClientConfig(tlsutil.ServerName)),
		} {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := yarnpb.NewClientServiceClient(dial(c.rmAddr, creds)).ListNodes(cctx, &yarnpb.ListNodesRequest{})
			_, nerr := yarnpb.NewContainerManagerServiceClient(dial(node, creds)).StartContainers(cctx, &yarnpb.StartContainersRequest{})
			ccancel()
			if err == nil || nerr == nil {
				t.Errorf("%s: RM answered %v, NM answered %v", name, err, nerr)
			}
		}
	})

	mallory := c.signed(tlstest.User("mallory"))
	rm, err := rmclient.New([]string{c.rmAddr}, mallory)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	nms := nmclient.New(mallory)
	defer nms.Close()
	// denied checks a refusal: a PermissionDenied error, or a batch call's
	// per-container failure that says why.
	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrPermissionDenied) && (err == nil || !strings.Contains(err.Error(), "may not")) {
			t.Errorf("%s: %v, want permission denied", what, err)
		}
	}
	t.Run("a user beyond their rights", func(t *testing.T) {
		_, err := rm.Kill(ctx, victim, "")
		denied("kill another user's application", err)
		_, err = rm.Decommission(ctx, []string{node}, false, 0)
		denied("decommission a node", err)
		_, err = rm.RegisterNode(ctx, &yarnpb.RegisterNodeManagerRequest{NodeId: "evil:1", Total: &yarnpb.Resource{MemoryMb: 1 << 40, Vcores: 1 << 30}})
		denied("register a node", err)
		_, err = rm.NewAMRMClient(yarnpb.AttemptID(victim, 1), nil, rmclient.Handler{}).Register(ctx, "h", 1, "")
		denied("register as the victim's AM", err)
		err = nms.Start(ctx, node, &yarnpb.StartContainerRequest{ContainerId: yarnpb.ContainerID(1, victim, 1, 999), User: "root",
			Resource: &yarnpb.Resource{MemoryMb: 64, Vcores: 1}, LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"sh", "-c", "id"}}})
		denied("start a container", err)
		denied("stop the victim's container", nms.Stop(ctx, node, victimContainer))
		var sb strings.Builder
		denied("read the victim's log", nms.ReadLog(ctx, node, victimContainer, "stdout", false, &sb))
	})

	t.Run("an application beyond its rights", func(t *testing.T) {
		// The certificate of another application, as its AM holds it.
		app := c.signed(tlsutil.Identity{Kind: tlsutil.KindApp, Name: "application_1_0001", User: "mallory"})
		arm, err := rmclient.New([]string{c.rmAddr}, app)
		if err != nil {
			t.Fatal(err)
		}
		defer arm.Close()
		_, err = arm.NewAMRMClient(yarnpb.AttemptID(victim, 1), nil, rmclient.Handler{}).Register(ctx, "h", 1, "")
		denied("register as another application's AM", err)
		_, err = arm.Kill(ctx, victim, "")
		denied("kill another application", err)
		_, err = arm.Report(ctx, victim, false)
		denied("read another application", err)
		anm := nmclient.New(app)
		defer anm.Close()
		denied("stop another application's container", anm.Stop(ctx, node, victimContainer))
	})

	t.Run("the application's own certificate without its tokens", func(t *testing.T) {
		// The victim's certificate alone, as if it leaked from its
		// container: the RM wants the attempt's AMToken, the NM a
		// container token the RM signed.
		own := c.signed(tlsutil.Identity{Kind: tlsutil.KindApp, Name: victim, User: "root"})
		orm, err := rmclient.New([]string{c.rmAddr}, own)
		if err != nil {
			t.Fatal(err)
		}
		defer orm.Close()
		forgedAM, _ := token.AM(token.NewKey(1, time.Now()), yarnpb.AttemptID(victim, 1))
		for name, tok := range map[string][]byte{"no AMToken": nil, "a forged AMToken": forgedAM} {
			_, err = orm.NewAMRMClient(yarnpb.AttemptID(victim, 1), tok, rmclient.Handler{}).Register(ctx, "h", 1, "")
			if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrUnauthenticated) {
				t.Errorf("register with %s: %v, want unauthenticated", name, err)
			}
		}
		onm := nmclient.New(own)
		defer onm.Close()
		cid := yarnpb.ContainerID(1, victim, 1, 999)
		forged, _ := token.Container(token.NewKey(1, time.Now()), &yarnpb.ContainerTokenIdentifier{ContainerId: cid, NodeId: node,
			ApplicationId: victim, User: "root", Resource: &yarnpb.Resource{MemoryMb: 64, Vcores: 1}, ExpiryMs: time.Now().Add(time.Hour).UnixMilli()})
		for name, tok := range map[string][]byte{"no container token": nil, "a forged container token": forged} {
			err := onm.Start(ctx, node, &yarnpb.StartContainerRequest{ContainerId: cid, Token: tok,
				Resource: &yarnpb.Resource{MemoryMb: 64, Vcores: 1}, LaunchContext: &yarnpb.ContainerLaunchContext{Command: []string{"sh", "-c", "id"}}})
			if err == nil || !strings.Contains(err.Error(), "token") {
				t.Errorf("start a container with %s: %v, want refused", name, err)
			}
		}
	})

	t.Run("paths in ids", func(t *testing.T) {
		cc := dial(node, credentials.NewTLS(admin.ClientConfig(tlsutil.NodeName)))
		stream, err := yarnpb.NewContainerManagerServiceClient(cc).ReadContainerLog(ctx, &yarnpb.ReadContainerLogRequest{
			ContainerId: "container_e01_x_a_b_c/../../../../../../etc", Name: "passwd"})
		if err == nil {
			_, err = stream.Recv()
		}
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrInvalidArgument) || err == io.EOF {
			t.Errorf("a container id with ..: %v, want invalid argument", err)
		}
	})

	t.Run("bounds", func(t *testing.T) {
		nodeID := c.signed(tlstest.Node("nm-evil"))
		nrm, err := rmclient.New([]string{c.rmAddr}, nodeID)
		if err != nil {
			t.Fatal(err)
		}
		defer nrm.Close()
		_, err = nrm.RegisterNode(ctx, &yarnpb.RegisterNodeManagerRequest{NodeId: "evil:1", Total: &yarnpb.Resource{MemoryMb: 1 << 62, Vcores: 1 << 30}})
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "more than any host has") {
			t.Errorf("a node of 1<<62 MB: %v", err)
		}
		// A node certificate may not speak for another node.
		_, err = nrm.NodeHeartbeat(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: node, Healthy: true})
		denied("heartbeat for another node", err)
		app, err := rmclient.New([]string{c.rmAddr}, admin)
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		err = app.Submit(ctx, &yarnpb.ApplicationSubmissionContext{ApplicationId: "application_1_999999",
			AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"true"}}})
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not issued") {
			t.Errorf("an application id the RM never issued: %v", err)
		}
	})

	// The victim is still there, and the owner may kill it.
	if a := c.app(victim); a.State != "RUNNING" {
		t.Fatalf("the victim is %s after the probes", a.State)
	}
	c.mustLoom("app", "kill", victim)
	input := filepath.Join(c.dir, "words.txt")
	want := writeWords(t, input)
	output := filepath.Join(c.dir, "out")
	c.mustLoom("run", "-t", "per-job", "-p", "2", "--slots-per-tm", "2", wordcountBin, "--input", input, "--output", output)
	checkCounts(t, output, 2, want)
}
