package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "inspect the cluster's nodes",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list nodes (RUNNING, UNHEALTHY, DECOMMISSIONING; --all adds LOST, DECOMMISSIONED, SHUTDOWN)",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag, &cli.BoolFlag{Name: "all", Usage: "include nodes that left the cluster"}},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						nodes, err := rm.Nodes(c.Context, c.Bool("all"))
						if err != nil {
							return err
						}
						if asJSON {
							out := []yarnpb.NodeJSON{}
							for _, n := range nodes {
								out = append(out, yarnpb.NodeToJSON(n))
							}
							return printJSON(stdout(), out)
						}
						fmt.Fprintf(stdout(), "Total Nodes: %d\n", len(nodes))
						var rows [][]string
						for _, n := range nodes {
							rows = append(rows, []string{n.Id, yarnpb.StateName(n.State.String()), n.HttpAddress,
								fmt.Sprint(n.NumContainers),
								fmt.Sprintf("%d/%d MB", n.Used.GetMemoryMb(), n.Total.GetMemoryMb()),
								fmt.Sprintf("%d/%d", n.Used.GetVcores(), n.Total.GetVcores())})
						}
						table(stdout(), "Node-Id\tState\tHttp-Address\tContainers\tMemory\tVCores", rows)
						return nil
					})
				},
			},
			{
				Name:      "status",
				Usage:     "show one node",
				ArgsUsage: "NODE",
				Flags:     []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "NODE")
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						n, err := rm.Node(c.Context, id)
						if err != nil {
							return err
						}
						if asJSON {
							return printJSON(stdout(), yarnpb.NodeToJSON(n))
						}
						printNode(n)
						return nil
					})
				},
			},
		},
	}
}

func printNode(n *yarnpb.NodeReport) {
	w := stdout()
	fmt.Fprintf(w, "Node Report:\n")
	fmt.Fprintf(w, "\tNode-Id : %s\n", n.Id)
	fmt.Fprintf(w, "\tRack : %s\n", n.Rack)
	fmt.Fprintf(w, "\tNode-State : %s\n", yarnpb.StateName(n.State.String()))
	fmt.Fprintf(w, "\tNode-Http-Address : %s\n", n.HttpAddress)
	fmt.Fprintf(w, "\tLast-Health-Update : %s\n", fmtTime(n.LastHeartbeat))
	fmt.Fprintf(w, "\tHealth-Report : %s\n", n.HealthReport)
	fmt.Fprintf(w, "\tContainers : %d\n", n.NumContainers)
	fmt.Fprintf(w, "\tMemory-Used : %dMB\n", n.Used.GetMemoryMb())
	fmt.Fprintf(w, "\tMemory-Capacity : %dMB\n", n.Total.GetMemoryMb())
	fmt.Fprintf(w, "\tCPU-Used : %d vcores\n", n.Used.GetVcores())
	fmt.Fprintf(w, "\tCPU-Capacity : %d vcores\n", n.Total.GetVcores())
	fmt.Fprintf(w, "\tNode-Labels : %s\n", strings.Join(n.Labels, ","))
}
