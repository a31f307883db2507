package integration

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loom-project/loom/am/flink"
	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// A Flink application's ports take only the application's own processes
// and, at the JobManager's Dispatcher, its users by their rights: a
// TaskManager refuses slot requests and frees from anyone else, the
// JobManager's gateways refuse users, a user who is neither the owner nor
// an admin may read jobs but not cancel them, and the REST API does not
// cancel without the web token. The job then finishes with the right
// counts.
func TestFlinkPortsTakeOnlyTheirApplication(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	input, output := filepath.Join(c.dir, "words.txt"), filepath.Join(c.dir, "out")
	want := writeWords(t, input)
	out := c.mustLoom("run", "-t", "per-job", "-d", "-p", "2", "--slots-per-tm", "1", wordcountBin,
		"--input", input, "--output", output, "--line-delay", "5ms")
	appID := appIDRe.FindString(out)
	link := regexp.MustCompile(`(http://[0-9.:]+)/\?token=[0-9a-f]{64}`).FindStringSubmatch(out)
	if appID == "" || link == nil {
		t.Fatalf("run -d printed no application and dashboard link with its token:\n%s", out)
	}
	web := link[1]
	job := c.waitAppJob(appID, func(j jobJSON) bool { return j.State == "RUNNING" }, "the job RUNNING")

	owner := c.signed(tlstest.User("root", "admins"))
	rm, err := rmclient.New([]string{c.rmAddr}, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	rep, err := rm.Report(ctx, appID, false)
	if err != nil {
		t.Fatal(err)
	}
	jmAddr, err := flink.JobManagerAddr(rep)
	if err != nil {
		t.Fatal(err)
	}
	var tms struct {
		TaskManagers []struct {
			Path string `json:"path"`
		} `json:"taskmanagers"`
	}
	resp, err := http.Get(web + "/taskmanagers")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&tms)
	resp.Body.Close()
	if err != nil || len(tms.TaskManagers) == 0 {
		t.Fatalf("/taskmanagers: %v %+v", err, tms)
	}
	tmAddr := tms.TaskManagers[0].Path

	dial := func(addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	otherApp := c.signed(tlsutil.Identity{Kind: tlsutil.KindApp, Name: "application_1_0001", User: "mallory"})
	stranger, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		t.Fatal(err)
	}
	mallory := c.signed(tlstest.User("mallory"))
	t.Run("TaskManager", func(t *testing.T) {
		for name, creds := range map[string]credentials.TransportCredentials{
			"plaintext":                   insecure.NewCredentials(),
			"another application":         credentials.NewTLS(otherApp.AppClientConfig(appID)),
			"another deployment's secret": credentials.NewTLS(stranger.ClientTLS()),
			"the owner, a user":           credentials.NewTLS(owner.AppClientConfig(appID)),
		} {
			te := flinkpb.NewTaskExecutorClient(dial(tmAddr, creds))
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, ferr := te.FreeSlots(cctx, &flinkpb.FreeSlotsRequest{JobId: job.ID})
			_, rerr := te.RequestSlot(cctx, &flinkpb.RequestSlotRequest{JobId: "0123456789abcdef0123456789abcdef", JobMasterAddress: "127.0.0.1:1"})
			ccancel()
			if ferr == nil || rerr == nil {
				t.Errorf("%s: FreeSlots answered %v, RequestSlot %v", name, ferr, rerr)
			}
		}
	})
	t.Run("JobManager", func(t *testing.T) {
		for name, creds := range map[string]credentials.TransportCredentials{
			"plaintext":                   insecure.NewCredentials(),
			"another application":         credentials.NewTLS(otherApp.AppClientConfig(appID)),
			"another deployment's secret": credentials.NewTLS(stranger.ClientTLS()),
		} {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := flinkpb.NewDispatcherClient(dial(jmAddr, creds)).ListJobs(cctx, &flinkpb.ListJobsRequest{})
			ccancel()
			if err == nil {
				t.Errorf("%s: ListJobs answered", name)
			}
		}
		cc := dial(jmAddr, credentials.NewTLS(mallory.AppClientConfig(appID)))
		d := flinkpb.NewDispatcherClient(cc)
		if _, err := d.ListJobs(ctx, &flinkpb.ListJobsRequest{}); err != nil {
			t.Errorf("another user may read the jobs, as any report: %v", err)
		}
		_, err := d.CancelJob(ctx, &flinkpb.CancelJobRequest{JobId: job.ID})
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrPermissionDenied) {
			t.Errorf("another user canceled the job: %v, want permission denied", err)
		}
		// The gateways are the application's own, not even its owner's.
		ownerCC := dial(jmAddr, credentials.NewTLS(owner.AppClientConfig(appID)))
		_, err = flinkpb.NewJobMasterClient(ownerCC).WorkerFailed(ctx, &flinkpb.WorkerFailedRequest{JobId: job.ID, TaskManagerId: "x", Message: "forged"})
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrPermissionDenied) {
			t.Errorf("a user reported a worker failure to the JobMaster: %v, want permission denied", err)
		}
		_, err = flinkpb.NewResourceManagerClient(ownerCC).UnregisterTaskExecutor(ctx, &flinkpb.UnregisterTaskExecutorRequest{TaskManagerId: "x"})
		if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrPermissionDenied) {
			t.Errorf("a user unregistered a TaskManager: %v, want permission denied", err)
		}
	})
	t.Run("REST", func(t *testing.T) {
		resp, err := http.Get(web + "/jobs/" + job.ID + "/yarn-cancel")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("yarn-cancel without the token: %s, want 401", resp.Status)
		}
		// Another user sees the tracking URL without the token.
		mrm, err := rmclient.New([]string{c.rmAddr}, mallory)
		if err != nil {
			t.Fatal(err)
		}
		defer mrm.Close()
		r, err := mrm.Report(ctx, appID, false)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.TrackingUrl, "token") || !strings.HasPrefix(r.TrackingUrl, web) {
			t.Errorf("another user's report has tracking URL %q, want %s without its token", r.TrackingUrl, web)
		}
	})

	a := c.waitApp(appID, func(a appJSON) bool { return a.State == "FINISHED" || a.State == "FAILED" || a.State == "KILLED" }, "the application ended")
	if a.FinalStatus != "SUCCEEDED" {
		t.Fatalf("the application ended %s after the probes: %s", a.FinalStatus, a.Diagnostics)
	}
	checkCounts(t, output, 2, want)
}

// A standalone deployment takes only holders of its secret: a
// TaskManager and a client with another deployment's secret file are
// refused, and say why, while the deployment's own run a job.
func TestStandaloneTakesOnlyItsSecret(t *testing.T) {
	s := startStandalone(t, 1, 2)
	other := filepath.Join(t.TempDir(), "other-secret")
	if err := os.WriteFile(other, []byte(hex.EncodeToString(auth.NewSecret())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(s.dir, "stranger.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tm := exec.Command(loomBin, "taskmanager", "--jobmanager", s.jmAddr, "--slots", "2", "--addr", "127.0.0.1:0",
		"--dir", filepath.Join(s.dir, "stranger"), "--secret-file", other)
	tm.Stdout, tm.Stderr = f, f
	if err := tm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tm.Process.Kill(); _ = tm.Wait() })
	waitFor(t, 20*time.Second, "the stranger's refusal in its log", func() (bool, string) {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "does not hold this deployment's secret"), string(b)
	})
	s.waitTaskManagers(1) // the stranger never registered
	_, errs, code := runLoomEnv([]string{"LOOM_JOBMANAGER=" + s.jmAddr, "LOOM_FLINK_SECRET_FILE=" + other}, "job", "list")
	if code == 0 || !strings.Contains(errs, "do not trust each other") {
		t.Fatalf("a client with another secret: exit %d, %s", code, errs)
	}
	s.mustLoom("job", "list")
}
