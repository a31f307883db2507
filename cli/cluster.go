package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/localcluster"
	"github.com/loom-project/loom/rm"
	"github.com/loom-project/loom/rm/rmclient"
)

// makeDefaultConfig copies a cluster's client config to the user's
// default unless the default is one the user wrote (not `cluster up`).
func makeDefaultConfig(path string) (bool, error) {
	def := rmclient.DefaultConfigPath()
	if def == "" {
		return false, nil
	}
	if old, err := rmclient.LoadConfig(def); err == nil && old.By != rmclient.ConfigByClusterUp {
		return false, fmt.Errorf("%s is yours; leaving it alone", def)
	}
	cfg, err := rmclient.LoadConfig(path)
	if err != nil {
		return false, err
	}
	return true, rmclient.WriteConfig(def, cfg)
}

func clusterCommand() *cli.Command {
	d := localcluster.DefaultConfig()
	return &cli.Command{
		Name:  "cluster",
		Usage: "run a local cluster",
		Subcommands: []*cli.Command{{
			Name:  "up",
			Usage: "start a ResourceManager (or 3 or 5 replicas of it) and N NodeManagers on this machine, in the foreground; Ctrl-C stops them all",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "nodes", Value: d.Nodes, Usage: "number of NodeManagers"},
				&cli.StringFlag{Name: "dir", Value: "loom-cluster", Usage: "directory for the daemons' data and logs"},
				&cli.StringFlag{Name: "rm-addr", Value: d.RMAddr, Usage: "ResourceManager gRPC address (raft uses its port + 2)"},
				&cli.StringFlag{Name: "http-addr", Value: d.HTTPAddr, Usage: "ResourceManager HTTP address"},
				&cli.IntFlag{Name: "rm-replicas", Value: d.RMReplicas, Usage: "ResourceManager replicas in one raft cluster (1, 3 or 5); replica i listens on the ports above + 100*i"},
				&cli.Int64Flag{Name: "node-memory-mb", Value: d.NodeMemoryMB, Usage: "memory each node offers"},
				&cli.IntFlag{Name: "node-vcores", Value: int(d.NodeVCores), Usage: "vcores each node offers"},
				&cli.DurationFlag{Name: "node-expiry", Value: d.NodeExpiry, Usage: "a node silent this long is LOST"},
				&cli.IntFlag{Name: "max-completed-apps", Usage: "ended applications the RM keeps", DefaultText: fmt.Sprint(rm.DefaultMaxCompletedApps)},
				&cli.DurationFlag{Name: "completed-app-ttl", Usage: "an ended application is forgotten this long after it ended", DefaultText: rm.DefaultConfig().CompletedAppTTL.String()},
				&cli.DurationFlag{Name: "gc-interval", Usage: "how often the RM forgets what retention allows", DefaultText: rm.DefaultConfig().GCInterval.String()},
				queuesFlag,
				&cli.IntFlag{Name: "racks", Usage: "spread the nodes over this many racks, /rack-1 to /rack-N"},
				&cli.StringFlag{Name: "labeled-nodes", Usage: "LABEL:N: the last N nodes carry node label LABEL"},
				&cli.DurationFlag{Name: "preemption-grace", Usage: "how long an ApplicationMaster is warned before a container taken back from it is killed", DefaultText: rm.DefaultConfig().PreemptionGrace.String()},
				&cli.BoolFlag{Name: "nm-no-cgroups", Usage: "NodeManagers enforce memory by polling RSS instead of cgroups"},
				&cli.BoolFlag{Name: "no-user-config", Usage: "do not make this cluster the default of loom commands (" + rmclient.DefaultConfigPath() + ")"},
				logLevelFlag,
			},
			Action: func(c *cli.Context) error {
				cfg := localcluster.DefaultConfig()
				cfg.Nodes = c.Int("nodes")
				cfg.Dir = c.String("dir")
				cfg.RMAddr = c.String("rm-addr")
				cfg.HTTPAddr = c.String("http-addr")
				cfg.RMReplicas = c.Int("rm-replicas")
				cfg.NodeMemoryMB = c.Int64("node-memory-mb")
				cfg.NodeVCores = int32(c.Int("node-vcores"))
				cfg.NodeExpiry = c.Duration("node-expiry")
				cfg.LogLevel = c.String("log-level")
				cfg.NoCgroups = c.Bool("nm-no-cgroups")
				cfg.MaxCompletedApps = c.Int("max-completed-apps")
				cfg.CompletedAppTTL = c.Duration("completed-app-ttl")
				cfg.GCInterval = c.Duration("gc-interval")
				cfg.QueueFile = c.String("queues")
				cfg.Racks = c.Int("racks")
				if v := c.String("labeled-nodes"); v != "" {
					label, n, ok := strings.Cut(v, ":")
					count, err := strconv.Atoi(n)
					if !ok || err != nil || label == "" || count < 1 || count > cfg.Nodes {
						return fmt.Errorf("--labeled-nodes %q: want LABEL:N with N from 1 to the number of nodes (%d)", v, cfg.Nodes)
					}
					cfg.NodeLabel, cfg.LabeledNodes = label, count
				}
				cfg.PreemptionGrace = c.Duration("preemption-grace")
				out := stdout()
				rms := "1 ResourceManager"
				if cfg.RMReplicas > 1 {
					rms = fmt.Sprintf("%d ResourceManager replicas", cfg.RMReplicas)
				}
				fmt.Fprintf(out, "starting a local cluster in %s: %s, %d NodeManagers\n", cfg.Dir, rms, cfg.Nodes)
				cl, err := localcluster.Start(c.Context, cfg)
				if err != nil {
					return err
				}
				defer func() {
					fmt.Fprintln(out, "stopping the cluster...")
					cl.Stop()
					fmt.Fprintln(out, "cluster stopped")
				}()
				for i, addr := range cl.RMAddrs() {
					fmt.Fprintf(out, "ResourceManager  %s  web https://%s  log %s\n", addr, cl.HTTPAddrs()[i], cl.RMs[i].Log)
				}
				for _, n := range cl.Nodes {
					fmt.Fprintf(out, "NodeManager      %s  %d MB, %d vcores  RUNNING\n", n.Id, n.Total.GetMemoryMb(), n.Total.GetVcores())
				}
				fmt.Fprintf(out, "cluster ready in %s: %d nodes RUNNING. Ctrl-C stops it.\n", cl.Took.Round(1e6), len(cl.Nodes))
				fmt.Fprintf(out, "every port takes only certificates of the cluster's CA (%s); you are its admin\n", filepath.Join(cfg.Dir, "tls"))
				if !c.Bool("no-user-config") {
					if wrote, err := makeDefaultConfig(cl.ClientConfig); err != nil {
						fmt.Fprintf(out, "not made the default cluster: %v\n", err)
					} else if wrote {
						fmt.Fprintf(out, "loom commands in any terminal of yours now use this cluster (%s)\n", rmclient.DefaultConfigPath())
					}
				}
				fmt.Fprintf(out, "use it with: export LOOM_CONFIG=%s\n", cl.ClientConfig)
				fmt.Fprintf(out, "its web UI in your browser: loom ui\n")
				if len(cl.RMs) > 1 {
					fmt.Fprintf(out, "its ResourceManagers: export LOOM_RM=%s\n", strings.Join(cl.RMAddrs(), ","))
				}
				// A daemon that dies is started again; Ctrl-C stops them all.
				cl.Supervise(os.Stderr)
				<-c.Context.Done()
				return nil
			},
		}},
	}
}
