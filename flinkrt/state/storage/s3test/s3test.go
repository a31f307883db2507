// Package s3test runs a real S3-compatible server for tests: SeaweedFS's
// S3 gateway (`weed server -s3`), built by scripts/seaweedfs.sh, which
// `make test` runs first and names in LOOM_SEAWEEDFS.
package s3test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/loom-project/loom/flinkrt/state/storage"
)

// EnvBinary names the SeaweedFS binary (weed) the tests run.
const EnvBinary = "LOOM_SEAWEEDFS"

// The identity the server is started with: an admin, who may create
// buckets (and whose first write to a missing bucket creates it).
const (
	AccessKey = "loomtest"
	SecretKey = "loomtest-secret-key"
)

// Binary finds the SeaweedFS binary, or says how to get it.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no SeaweedFS binary: `make test` builds one (scripts/seaweedfs.sh prints its path; set %s to it)", EnvBinary)
}

// Ports are the ports of one server's parts.
type Ports struct {
	Master, MasterGRPC, Volume, VolumeGRPC, Filer, FilerGRPC, S3, S3GRPC int
}

// DefaultPorts are SeaweedFS's own, for a server alone on its address.
var DefaultPorts = Ports{9333, 19333, 8080, 18080, 8888, 18888, 8333, 18333}

// Args are the arguments of `weed` for a server with its data in dir
// that listens on ip. Its parts' gRPC sockets go in /tmp under their
// ports' names, which RemoveSockets removes.
func Args(dir, ip string, p Ports) ([]string, error) {
	cfg, err := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name":        "loom",
		"credentials": []any{map[string]string{"accessKey": AccessKey, "secretKey": SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(conf, cfg, 0o600); err != nil {
		return nil, err
	}
	port := func(n int) string { return strconv.Itoa(n) }
	return []string{"-logtostderr", "server",
		"-dir=" + filepath.Join(dir, "data"), "-ip=" + ip, "-ip.bind=" + ip,
		"-master.port=" + port(p.Master), "-master.port.grpc=" + port(p.MasterGRPC),
		"-master.telemetry=false", "-master.volumeSizeLimitMB=64",
		"-volume.port=" + port(p.Volume), "-volume.port.grpc=" + port(p.VolumeGRPC), "-volume.max=0",
		"-filer.port=" + port(p.Filer), "-filer.port.grpc=" + port(p.FilerGRPC),
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port=" + port(p.S3), "-s3.port.grpc=" + port(p.S3GRPC),
		"-s3.localSocket=" + filepath.Join(dir, "s3.sock"), "-s3.config=" + conf,
		"-s3.port.iceberg=0", "-s3.port.lance=0",
	}, nil
}

// RemoveSockets removes the gRPC sockets a server on ports p left in
// /tmp.
func RemoveSockets(p Ports) {
	for _, svc := range []struct {
		name string
		port int
	}{{"master", p.MasterGRPC}, {"volume", p.VolumeGRPC}, {"filer", p.FilerGRPC}, {"s3", p.S3GRPC}} {
		_ = os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc.name, svc.port))
	}
}

// Server is a running SeaweedFS with its S3 gateway.
type Server struct {
	// Endpoint is the S3 gateway's URL.
	Endpoint string
	// Dial, when set, makes the test's own connections to the server
	// (for a server in a network namespace of its own).
	Dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	ports Ports
	cmd   *exec.Cmd
	done  chan struct{}
	log   *syncBuffer
}

// Attach is a server a test started itself (in a network namespace, say)
// with Args, reached through dial.
func Attach(endpoint string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Server {
	return &Server{Endpoint: endpoint, Dial: dial}
}

// Start starts a server in a temporary directory for the test, and stops
// it when the test ends; it skips the test, saying why, when there is no
// SeaweedFS binary.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	s, err := Launch(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch starts the server bin with its data in dir, on 127.0.0.1, and
// waits until it stores objects.
func Launch(bin, dir string) (*Server, error) {
	var last error
	// A port picked free can be taken before the server binds it.
	for try := range 3 {
		s, err := launch(bin, filepath.Join(dir, strconv.Itoa(try)))
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func launch(bin, dir string) (*Server, error) {
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	p := Ports{ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]}
	args, err := Args(dir, "127.0.0.1", p)
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", p.S3), ports: p, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.WaitReady(60 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("SeaweedFS did not start: %v\n%s", err, s.log.tail(40))
	}
	return s, nil
}

// WaitReady waits until the gateway stores an object: it answers
// earlier, but refuses writes until its filer has joined its master.
func (s *Server) WaitReady(within time.Duration) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.MakeBucket(ctx, readyBucket, minio.MakeBucketOptions{})
		if r := minio.ToErrorResponse(err); r.Code == "BucketAlreadyOwnedByYou" || r.Code == "BucketAlreadyExists" {
			err = nil
		}
		if err == nil {
			_, err = c.PutObject(ctx, readyBucket, "ready", strings.NewReader("ready"), 5, minio.PutObjectOptions{})
		}
		cancel()
		if err == nil {
			return nil
		}
		var exited <-chan struct{}
		if s.done != nil {
			exited = s.done
		}
		select {
		case <-exited:
			return fmt.Errorf("it exited (%v)", s.cmd.ProcessState)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// readyBucket is where WaitReady writes.
const readyBucket = "s3test-ready"

// Stop stops a server Launch started.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-s.done
	RemoveSockets(s.ports)
}

// Client is an S3 client of the server, as its admin.
func (s *Server) Client() (*minio.Client, error) {
	tr := &http.Transport{DialContext: s.Dial, ResponseHeaderTimeout: 30 * time.Second}
	return minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), MaxRetries: 1, Transport: tr})
}

// Bucket creates a bucket and returns its s3:// location.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	loc, err := s.MakeBucket(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// MakeBucket creates a bucket and returns its s3:// location.
func (s *Server) MakeBucket(name string) (string, error) {
	c, err := s.Client()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", fmt.Errorf("creating bucket %s: %w", name, err)
	}
	return "s3://" + name, nil
}

// Env is the environment of a process that uses the server.
func (s *Server) Env() []string {
	return []string{storage.EnvEndpoint + "=" + s.Endpoint, storage.EnvAccessKeyID + "=" + AccessKey, storage.EnvSecretAccessKey + "=" + SecretKey}
}

// Setenv points this test process's S3 settings at the server.
func (s *Server) Setenv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Log is what the server printed.
func (s *Server) Log() string { return s.log.String() }

// freePorts picks n free loopback ports below the host's ephemeral range,
// so that no connection's source port takes one before the server binds
// it.
func freePorts(n int) ([]int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 12000 {
				lo = v
			}
		}
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		p := 10000 + rand.IntN(lo-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found %d free ports of %d", len(ports), n)
	}
	return ports, nil
}

// syncBuffer is a bytes.Buffer that a process's output and a test may
// use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// The server logs a line per request; a test needs the last ones.
	if b.b.Len() > 4<<20 {
		rest := b.b.Bytes()[b.b.Len()-1<<20:]
		b.b = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
