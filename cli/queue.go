package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "inspect the scheduler's queues",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the leaf queues: capacity, maximum, use, applications",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					return printQueues(c, "")
				},
			},
			{
				Name:      "status",
				Usage:     "show a queue: capacity, maximum, AM share, use, applications pending, users",
				ArgsUsage: "QUEUE",
				Flags:     []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					q, err := oneArg(c, "QUEUE")
					if err != nil {
						return err
					}
					return printQueues(c, q)
				},
			},
		},
	}
}

// printQueues prints the queues (one when name is set): a table, the
// details of one, or JSON in YARN's camelCase.
func printQueues(c *cli.Context, name string) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	return withRM(c, func(rm *rmclient.Client) error {
		queues, err := rm.Queues(c.Context, name)
		if err != nil {
			return err
		}
		if asJSON {
			return printProtoJSON(stdout(), &yarnpb.QueueInfoResponse{Queues: queues})
		}
		if name != "" && len(queues) == 1 {
			q := queues[0]
			fmt.Fprintf(stdout(), "Queue: %s\n  Capacity: %.1f%%\n  Maximum capacity: %.1f%%\n  Maximum AM share: %.1f%%\n", q.Name, q.Capacity*100, q.MaxCapacity*100, q.MaxAmShare*100)
			fmt.Fprintf(stdout(), "  Used: %d MB, %d vcores (AMs: %d MB, %d vcores)\n", q.Used.GetMemoryMb(), q.Used.GetVcores(), q.AmUsed.GetMemoryMb(), q.AmUsed.GetVcores())
			fmt.Fprintf(stdout(), "  Applications: %d (%d pending)\n  Users: %s\n", q.NumApplications, q.NumPending, orNone(strings.Join(q.Users, ", ")))
			return nil
		}
		var rows [][]string
		for _, q := range queues {
			rows = append(rows, []string{q.Name, fmt.Sprintf("%.1f%%", q.Capacity*100), fmt.Sprintf("%.1f%%", q.MaxCapacity*100),
				fmt.Sprintf("%d MB, %d vcores", q.Used.GetMemoryMb(), q.Used.GetVcores()), fmt.Sprint(q.NumApplications), fmt.Sprint(q.NumPending)})
		}
		table(stdout(), "Queue\tCapacity\tMax-Capacity\tUsed\tApplications\tPending", rows)
		return nil
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
