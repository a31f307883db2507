package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "administer the cluster",
		Subcommands: []*cli.Command{
			{
				Name:      "decommission",
				Usage:     "take nodes out of the cluster (--graceful: no new containers, leave when empty or after --timeout)",
				ArgsUsage: "NODE...",
				Flags: []cli.Flag{rmFlag, configFlag,
					&cli.BoolFlag{Name: "graceful", Usage: "let running containers finish"},
					&cli.DurationFlag{Name: "timeout", Usage: "graceful: kill what still runs after this long (0: wait)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("name the nodes to decommission; `loom node list` shows them")
					}
					return withRM(c, func(rm *rmclient.Client) error {
						changes, err := rm.Decommission(c.Context, c.Args().Slice(), c.Bool("graceful"), c.Duration("timeout"))
						if err != nil {
							return err
						}
						printNodeChanges(changes)
						return nil
					})
				},
			},
			{
				Name:      "recommission",
				Usage:     "bring decommissioning nodes back",
				ArgsUsage: "NODE...",
				Flags:     []cli.Flag{rmFlag, configFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("name the nodes to recommission; `loom node list --all` shows them")
					}
					return withRM(c, func(rm *rmclient.Client) error {
						changes, err := rm.Recommission(c.Context, c.Args().Slice())
						if err != nil {
							return err
						}
						printNodeChanges(changes)
						return nil
					})
				},
			},
			{
				Name:  "refresh-queues",
				Usage: "have the leader reload its queue file (--queues); a file that does not parse, or drops a queue with live applications, changes nothing",
				Flags: []cli.Flag{rmFlag, configFlag},
				Action: func(c *cli.Context) error {
					return withRM(c, func(rm *rmclient.Client) error {
						resp, err := rm.RefreshQueues(c.Context)
						if err != nil {
							return err
						}
						if !resp.Changed {
							fmt.Fprintf(stdout(), "The queues already are those of %s: %s\n", resp.File, strings.Join(resp.Leaves, ", "))
							return nil
						}
						fmt.Fprintf(stdout(), "Queues reloaded from %s: %s\n", resp.File, strings.Join(resp.Leaves, ", "))
						return nil
					})
				},
			},
			{
				Name:  "state",
				Usage: "show the ResourceManager's raft state and peers",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						st, err := rm.ServiceState(c.Context)
						if err != nil {
							return err
						}
						if asJSON {
							return printProtoJSON(stdout(), st)
						}
						fmt.Fprintf(stdout(), "state %s, leader %s, epoch %d, last index %d\n", st.State, st.LeaderAddress, st.Epoch, st.LastIndex)
						var rows [][]string
						for _, p := range st.Peers {
							rows = append(rows, []string{p.Id, p.Address, fmt.Sprint(p.Leader), fmt.Sprint(p.Voter)})
						}
						table(stdout(), "Id\tRaft-Address\tLeader\tVoter", rows)
						return nil
					})
				},
			},
			raftCommand(),
		},
	}
}

// raftPeer is one replica as `admin raft list-peers -o json` prints it.
type raftPeer struct {
	ID      string `json:"id"`      // its gRPC address, the one clients dial
	Address string `json:"address"` // where its raft listens
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

func raftCommand() *cli.Command {
	return &cli.Command{
		Name:  "raft",
		Usage: "the ResourceManager replicas' raft cluster",
		Subcommands: []*cli.Command{
			{
				Name:  "list-peers",
				Usage: "list the replicas, which one leads and which vote",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						st, err := leaderState(c.Context, rm)
						if err != nil {
							return err
						}
						peers := make([]raftPeer, 0, len(st.Peers))
						for _, p := range st.Peers {
							peers = append(peers, raftPeer{ID: p.Id, Address: p.Address, Leader: p.Leader, Voter: p.Voter})
						}
						if asJSON {
							return printJSON(stdout(), peers)
						}
						var rows [][]string
						for _, p := range peers {
							state := "follower"
							if p.Leader {
								state = "leader"
							}
							rows = append(rows, []string{p.ID, p.Address, state, fmt.Sprint(p.Voter)})
						}
						table(stdout(), "ID\tAddress\tState\tVoter", rows)
						return nil
					})
				},
			},
			{
				Name:      "remove-peer",
				Usage:     "take a replica out of the raft cluster (one that is gone for good, or before it leaves)",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{rmFlag, configFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("name one replica by its ID; `loom admin raft list-peers` shows them")
					}
					return withRM(c, func(rm *rmclient.Client) error {
						if err := rm.RemoveRaftPeer(c.Context, c.Args().First()); err != nil {
							return err
						}
						fmt.Fprintf(stdout(), "removed %s from the raft cluster\n", c.Args().First())
						return nil
					})
				},
			},
		},
	}
}

// leaderState is the raft state as the leader sees it, found through the
// client's replicas: one that is still looking for its cluster, was
// removed from it, or knows no leader cannot say who the peers are.
func leaderState(ctx context.Context, rm *rmclient.Client) (*yarnpb.ServiceStateResponse, error) {
	ask := func(addr string) (*yarnpb.ServiceStateResponse, error) {
		one, err := rmclient.New([]string{addr}, rm.TLS())
		if err != nil {
			return nil, err
		}
		defer one.Close()
		one.RetryFor = 0
		return one.ServiceState(ctx)
	}
	var why []string
	for _, addr := range rm.Addrs() {
		st, err := ask(addr)
		switch {
		case err != nil:
			why = append(why, err.Error())
			continue
		case !st.InCluster:
			why = append(why, fmt.Sprintf("%s is in no raft cluster (still looking for its peers, or removed)", addr))
			continue
		case st.LeaderAddress == "":
			why = append(why, fmt.Sprintf("%s knows no leader", addr))
			continue
		case st.LeaderAddress == addr:
			return st, nil
		}
		if lst, err := ask(st.LeaderAddress); err == nil && lst.State == "leader" {
			return lst, nil
		}
		return st, nil
	}
	return nil, fmt.Errorf("no ResourceManager replica could say who its peers are: %s", strings.Join(why, "; "))
}

// printNodeChanges says, node by node, what an admin command did: the
// state it moved the node from and to, or the state it already was in.
func printNodeChanges(changes []*yarnpb.NodeChange) {
	for _, ch := range changes {
		before, after := yarnpb.StateName(ch.Before.String()), yarnpb.StateName(ch.After.String())
		switch {
		case ch.Before == ch.After:
			fmt.Fprintf(stdout(), "node %s: already %s, nothing to do\n", ch.NodeId, before)
		case ch.After == yarnpb.NodeState_NODE_SHUTDOWN:
			fmt.Fprintf(stdout(), "node %s: %s -> %s (it comes back RUNNING when its NodeManager registers again)\n", ch.NodeId, before, after)
		default:
			fmt.Fprintf(stdout(), "node %s: %s -> %s\n", ch.NodeId, before, after)
		}
	}
}
