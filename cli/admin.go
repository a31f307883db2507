package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"loom/rm/rmclient"
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
						if err := rm.Decommission(c.Context, c.Args().Slice(), c.Bool("graceful"), c.Duration("timeout")); err != nil {
							return err
						}
						fmt.Fprintf(stdout(), "decommissioning %v\n", c.Args().Slice())
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
					return withRM(c, func(rm *rmclient.Client) error {
						return rm.Recommission(c.Context, c.Args().Slice())
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
							return printJSON(stdout(), st)
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
		},
	}
}
