package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/nm"
	"github.com/loom-project/loom/rm"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
)

func rmCommand() *cli.Command {
	d := rm.DefaultConfig()
	return &cli.Command{
		Name:  "rm",
		Usage: "run a cluster ResourceManager",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "loom-rm", Usage: "directory for the raft log and snapshots", EnvVars: []string{"LOOM_RM_DATA_DIR"}},
			&cli.StringFlag{Name: "addr", Value: d.Addr, Usage: "gRPC listen address"},
			&cli.StringFlag{Name: "advertise", Usage: "gRPC address others dial (default: the listen address)"},
			&cli.StringFlag{Name: "http-addr", Value: d.HTTPAddr, Usage: "HTTP listen address (web API); empty disables it"},
			&cli.StringFlag{Name: "raft-addr", Value: d.RaftAddr, Usage: "raft listen address"},
			&cli.StringFlag{Name: "join", Usage: "comma-separated gRPC addresses of other replicas, to form a cluster with (with --bootstrap-expect) or to join one", EnvVars: []string{"LOOM_RM_JOIN"}},
			&cli.IntFlag{Name: "bootstrap-expect", Usage: "form a new raft cluster once this many replicas (3 or 5) have found each other through --join (default: 1, this replica alone, without --join; only join, with it)"},
			&cli.DurationFlag{Name: "nm-heartbeat", Value: d.NMHeartbeat, Usage: "interval NodeManagers heartbeat at"},
			&cli.DurationFlag{Name: "node-expiry", Value: d.NodeExpiry, Usage: "a node silent this long is LOST"},
			&cli.DurationFlag{Name: "am-expiry", Value: d.AMExpiry, Usage: "an ApplicationMaster silent this long has failed"},
			&cli.DurationFlag{Name: "am-register-timeout", Value: d.AMRegisterTimeout, Usage: "an ApplicationMaster whose container started and that has not registered this long has failed"},
			&cli.IntFlag{Name: "max-attempts", Value: int(d.MaxAttempts), Usage: "maximum AM attempts of an application"},
			&cli.Int64Flag{Name: "max-allocation-mb", Value: d.MaxAllocation.MemoryMB, Usage: "largest container memory"},
			&cli.IntFlag{Name: "max-allocation-vcores", Value: int(d.MaxAllocation.VCores), Usage: "largest container vcores"},
			&cli.DurationFlag{Name: "raft-timeout", Value: d.RaftTimeout, Usage: "raft heartbeat and election timeout"},
			&cli.IntFlag{Name: "keep-completed-containers", Value: d.KeepCompletedOfRunning, Usage: fmt.Sprintf("completed containers a running application keeps in the RM's state once its AM has heard of them, newest first (at most %d)", rm.KeepCompletedLimit)},
			&cli.IntFlag{Name: "max-completed-apps", Value: d.MaxCompletedApps, Usage: fmt.Sprintf("ended applications the RM keeps, newest first (at most %d)", rm.MaxCompletedAppsLimit)},
			&cli.DurationFlag{Name: "completed-app-ttl", Value: d.CompletedAppTTL, Usage: "an ended application is forgotten this long after it ended"},
			&cli.DurationFlag{Name: "gc-interval", Value: d.GCInterval, Usage: "how often the leader forgets what retention allows"},
			&cli.DurationFlag{Name: "node-ttl", Value: d.NodeTTL, Usage: "a node that left the cluster (shut down, lost, decommissioned) is forgotten after this long"},
			&cli.Int64Flag{Name: "staging-quota-mb", Value: rm.DefaultStagingQuota >> 20, Usage: "the most one user may keep in the staging store, MB"},
			&cli.DurationFlag{Name: "key-rotation", Value: d.KeyRotation, Usage: "how often the master key of AM and container tokens is replaced"},
			queuesFlag,
			&cli.BoolFlag{Name: "enable-debug", Usage: "serve Go's profiles at /debug/pprof/ of the HTTP address, to the cluster's admins"},
			&cli.BoolFlag{Name: "no-preemption", Usage: "never take containers back from queues over their guarantee"},
			&cli.IntFlag{Name: "node-locality-delay", Value: scheduler.DefaultNodeLocalityDelay, Usage: "missed scheduling opportunities an ask waits for its preferred nodes before it takes their racks' (delay scheduling)"},
			&cli.IntFlag{Name: "rack-locality-delay", Value: scheduler.DefaultRackLocalityDelay, Usage: "missed opportunities more it waits for those racks before it takes any node"},
			&cli.DurationFlag{Name: "preemption-grace", Value: d.PreemptionGrace, Usage: "how long an ApplicationMaster is warned before a container taken back from it is killed"},
			&cli.Float64Flag{Name: "preemption-per-round", Value: d.PreemptionPerRound, Usage: "the most of the cluster one preemption round (a second) newly takes back, a fraction (YARN's total_preemption_per_round)"},
			tlsCAFlag, tlsCertFlag, tlsKeyFlag,
			&cli.StringFlag{Name: "tls-ca-key", Usage: "the CA's key, to sign the certificates of applications' containers (without it no AM can be launched)", EnvVars: []string{"LOOM_TLS_CA_KEY"}},
			adminsFlag,
			logLevelFlag,
		},
		Action: func(c *cli.Context) error {
			cfg := rm.DefaultConfig()
			cfg.Logger = newLogger(c, "loom", os.Stderr)
			cfg.DataDir = c.String("data-dir")
			cfg.Addr = c.String("addr")
			cfg.AdvertiseAddr = c.String("advertise")
			cfg.HTTPAddr = c.String("http-addr")
			cfg.RaftAddr = c.String("raft-addr")
			cfg.Join = splitList(c.String("join"))
			cfg.BootstrapExpect = c.Int("bootstrap-expect")
			if !c.IsSet("bootstrap-expect") && len(cfg.Join) == 0 {
				cfg.BootstrapExpect = 1
			}
			cfg.NMHeartbeat = c.Duration("nm-heartbeat")
			cfg.NodeExpiry = c.Duration("node-expiry")
			cfg.AMExpiry = c.Duration("am-expiry")
			cfg.AMRegisterTimeout = c.Duration("am-register-timeout")
			cfg.MaxAttempts = int32(c.Int("max-attempts"))
			cfg.MaxAllocation = state.Resource{MemoryMB: c.Int64("max-allocation-mb"), VCores: int32(c.Int("max-allocation-vcores"))}
			cfg.RaftTimeout = c.Duration("raft-timeout")
			cfg.StagingQuota = c.Int64("staging-quota-mb") << 20
			cfg.MaxCompletedApps = c.Int("max-completed-apps")
			cfg.KeepCompletedOfRunning = c.Int("keep-completed-containers")
			if cfg.KeepCompletedOfRunning < 0 || cfg.KeepCompletedOfRunning > rm.KeepCompletedLimit {
				return fmt.Errorf("--keep-completed-containers %d: want 0..%d", cfg.KeepCompletedOfRunning, rm.KeepCompletedLimit)
			}
			cfg.CompletedAppTTL = c.Duration("completed-app-ttl")
			cfg.NodeTTL = c.Duration("node-ttl")
			cfg.GCInterval = c.Duration("gc-interval")
			if cfg.MaxCompletedApps < 0 || cfg.MaxCompletedApps > rm.MaxCompletedAppsLimit {
				return fmt.Errorf("--max-completed-apps %d: want 0..%d", cfg.MaxCompletedApps, rm.MaxCompletedAppsLimit)
			}
			if cfg.CompletedAppTTL <= 0 || cfg.NodeTTL <= 0 || cfg.GCInterval <= 0 {
				return errors.New("--completed-app-ttl, --node-ttl and --gc-interval must be positive")
			}
			cfg.KeyRotation = c.Duration("key-rotation")
			if cfg.StagingQuota <= 0 {
				return errors.New("--staging-quota-mb must be positive")
			}
			if cfg.KeyRotation < time.Minute {
				return errors.New("--key-rotation must be at least a minute")
			}
			cfg.Admins = splitList(c.String("admins"))
			cfg.QueueFile = c.String("queues")
			cfg.EnableDebug = c.Bool("enable-debug")
			cfg.Preemption = !c.Bool("no-preemption")
			cfg.PreemptionGrace = c.Duration("preemption-grace")
			cfg.PreemptionPerRound = c.Float64("preemption-per-round")
			cfg.NodeLocalityDelay, cfg.RackLocalityDelay = c.Int("node-locality-delay"), c.Int("rack-locality-delay")
			if cfg.NodeLocalityDelay < 0 || cfg.RackLocalityDelay < 0 {
				return errors.New("--node-locality-delay and --rack-locality-delay must not be negative")
			}
			var err error
			if cfg.TLS, err = daemonTLS(c); err != nil {
				return err
			}
			if k := c.String("tls-ca-key"); k != "" {
				if cfg.CA, err = tlsutil.LoadCA(c.String("tls-ca"), k); err != nil {
					return err
				}
			}
			if err := checkListen("--addr", cfg.Addr); err != nil {
				return err
			}
			if err := checkListen("--raft-addr", cfg.RaftAddr); err != nil {
				return err
			}
			if cfg.MaxAttempts < 1 {
				return errors.New("--max-attempts must be at least 1")
			}
			defer rm.TuneRuntime()()
			s, err := rm.New(cfg)
			if err != nil {
				return err
			}
			<-c.Context.Done()
			s.Shutdown()
			return nil
		},
	}
}

// The TLS files every daemon takes.
var (
	tlsCAFlag   = &cli.StringFlag{Name: "tls-ca", Usage: "the cluster CA's certificate (PEM)", EnvVars: []string{"LOOM_TLS_CA"}}
	tlsCertFlag = &cli.StringFlag{Name: "tls-cert", Usage: "this daemon's certificate, signed by the cluster CA (`loom tls cert create`)", EnvVars: []string{"LOOM_TLS_CERT"}}
	tlsKeyFlag  = &cli.StringFlag{Name: "tls-key", Usage: "this daemon's private key", EnvVars: []string{"LOOM_TLS_KEY"}}
	queuesFlag  = &cli.StringFlag{Name: "queues", Usage: "the capacity scheduler's queue file (HCL, see docs/queues.hcl); without it, the one queue root.default", EnvVars: []string{"LOOM_QUEUES"}}
	adminsFlag  = &cli.StringFlag{Name: "admins", Value: "group:" + rm.AdminGroup, Usage: "comma-separated users, and groups as group:NAME, who administer the cluster and may act on any application"}
)

func daemonTLS(c *cli.Context) (*tlsutil.Bundle, error) {
	return tlsutil.Load(tlsutil.Files{CA: c.String("tls-ca"), Cert: c.String("tls-cert"), Key: c.String("tls-key")})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func checkListen(flag, addr string) error {
	if err := rmclient.CheckAddr(addr); err != nil {
		// An empty host (":8032") is fine for listening.
		if _, port, perr := net.SplitHostPort(addr); perr == nil {
			if p, aerr := strconv.Atoi(port); aerr == nil && p >= 0 && p <= 65535 {
				return nil
			}
		}
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	return nil
}

func nmCommand() *cli.Command {
	d := nm.DefaultConfig()
	return &cli.Command{
		Name:  "nm",
		Usage: "run a NodeManager",
		Flags: []cli.Flag{
			rmFlag,
			&cli.StringFlag{Name: "dir", Value: "loom-nm", Usage: "directory for working dirs, logs and the file cache", EnvVars: []string{"LOOM_NM_DIR"}},
			&cli.StringFlag{Name: "addr", Value: d.Addr, Usage: "gRPC listen address (the node id)"},
			&cli.StringFlag{Name: "advertise", Usage: "node id others dial (default: the listen address)"},
			&cli.StringFlag{Name: "http-addr", Value: d.HTTPAddr, Usage: "HTTP listen address; empty disables it"},
			&cli.Int64Flag{Name: "memory-mb", Value: d.MemoryMB, Usage: "memory offered to containers (default: 80% of the host's)"},
			&cli.IntFlag{Name: "vcores", Value: int(d.VCores), Usage: "vcores offered to containers (default: the host's CPUs)"},
			&cli.StringFlag{Name: "labels", Usage: "comma-separated node labels: partitions only asks for one of them use, and only queues whose accessible_node_labels list it"},
			&cli.StringFlag{Name: "rack", Usage: "the node's rack, as /dc1/rack7, for rack-local placement (default: /default-rack)"},
			&cli.DurationFlag{Name: "kill-grace", Value: d.KillGrace, Usage: "time between SIGTERM and SIGKILL when stopping a container"},
			&cli.Int64Flag{Name: "cache-size-mb", Value: nm.DefaultCacheMB, Usage: "the most the localization cache keeps, MB; the least recently used files go first"},
			&cli.DurationFlag{Name: "log-retention", Value: nm.DefaultLogRetention, Usage: "how long an ended application's container logs stay on the node"},
			&cli.IntFlag{Name: "max-app-logs", Value: nm.DefaultMaxAppLogs, Usage: "the most ended applications whose logs the node keeps; the oldest go first"},
			&cli.BoolFlag{Name: "no-cgroups", Usage: "enforce memory by polling process RSS even where cgroups are writable"},
			tlsCAFlag, tlsCertFlag, tlsKeyFlag,
			adminsFlag,
			logLevelFlag,
		},
		Action: func(c *cli.Context) error {
			cfg := nm.DefaultConfig()
			cfg.Logger = newLogger(c, "loom", os.Stderr)
			addrs, err := rmclient.ParseAddrs(c.String("rm"))
			if err != nil {
				return err
			}
			cfg.RMAddrs = addrs
			cfg.Dir = c.String("dir")
			cfg.Addr = c.String("addr")
			cfg.AdvertiseAddr = c.String("advertise")
			cfg.HTTPAddr = c.String("http-addr")
			cfg.MemoryMB = c.Int64("memory-mb")
			cfg.VCores = int32(c.Int("vcores"))
			cfg.KillGrace = c.Duration("kill-grace")
			cfg.CacheMB = c.Int64("cache-size-mb")
			if cfg.CacheMB < 1 {
				return errors.New("--cache-size-mb must be positive")
			}
			cfg.LogRetention = c.Duration("log-retention")
			cfg.MaxAppLogs = c.Int("max-app-logs")
			if cfg.LogRetention <= 0 || cfg.MaxAppLogs < 1 {
				return errors.New("--log-retention and --max-app-logs must be positive")
			}
			cfg.NoCgroups = c.Bool("no-cgroups")
			cfg.Admins = splitList(c.String("admins"))
			if cfg.TLS, err = daemonTLS(c); err != nil {
				return err
			}
			if l := c.String("labels"); l != "" {
				cfg.Labels = strings.Split(l, ",")
			}
			cfg.Rack = c.String("rack")
			if err := checkListen("--addr", cfg.Addr); err != nil {
				return err
			}
			n, err := nm.New(cfg)
			if err != nil {
				return err
			}
			return n.Run(c.Context)
		},
	}
}
