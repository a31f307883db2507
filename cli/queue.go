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
// details of one, or JSON with the names of YARN's scheduler REST API.
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
			if name != "" && len(queues) == 1 {
				return printJSON(stdout(), yarnpb.QueueToJSON(queues[0]))
			}
			out := []yarnpb.QueueJSON{}
			for _, q := range queues {
				out = append(out, yarnpb.QueueToJSON(q))
			}
			return printJSON(stdout(), out)
		}
		if name != "" && len(queues) == 1 {
			printQueueStatus(queues[0])
			return nil
		}
		var rows [][]string
		for _, q := range queues {
			rows = append(rows, []string{q.Name, fmt.Sprintf("%.1f%%", q.Capacity*100), fmt.Sprintf("%.1f%%", q.MaxCapacity*100),
				fmt.Sprintf("%.1f%%", q.UsedShare()*100), res(q.Used), res(q.Pending), fmt.Sprint(q.NumApplications), fmt.Sprint(q.NumPending)})
		}
		table(stdout(), "Queue\tCapacity\tMax-Capacity\tUsed-Capacity\tUsed\tPending\tApplications\tPending-Apps", rows)
		return nil
	})
}

func res(r *yarnpb.Resource) string {
	return fmt.Sprintf("%d MB, %d vcores", r.GetMemoryMb(), r.GetVcores())
}

func printQueueStatus(q *yarnpb.QueueInfo) {
	w := stdout()
	fmt.Fprintf(w, "Queue: %s\n", q.Name)
	fmt.Fprintf(w, "  Capacity: %.1f%% (%s now)\n", q.Capacity*100, res(q.Guaranteed))
	fmt.Fprintf(w, "  Maximum capacity: %.1f%% (%s now)\n", q.MaxCapacity*100, res(q.Maximum))
	fmt.Fprintf(w, "  Used: %s, %.1f%% of its capacity (AMs: %s, at most %.1f%% of its maximum)\n", res(q.Used), q.UsedShare()*100, res(q.AmUsed), q.MaxAmShare*100)
	fmt.Fprintf(w, "  Pending: %s\n", res(q.Pending))
	fmt.Fprintf(w, "  Containers: %d (%d being preempted)\n", q.NumContainers, q.Preempting)
	fmt.Fprintf(w, "  Applications: %d (%d pending), at most %d, ordered %s\n", q.NumApplications, q.NumPending, q.MaxApplications, q.Ordering)
	fmt.Fprintf(w, "  User limits: minimum %.0f%%, factor %g\n", q.MinimumUserLimitPercent, q.UserLimitFactor)
	if len(q.NodeLabels) > 0 {
		fmt.Fprintf(w, "  Node labels: %s\n", strings.Join(q.NodeLabels, ", "))
	}
	for _, p := range q.Partitions {
		fmt.Fprintf(w, "  Partition %s: capacity %.1f%% (%s now), maximum %.1f%% (%s now), used %s, %.1f%% of its capacity, pending %s\n",
			p.Label, p.Capacity*100, res(p.Guaranteed), p.MaxCapacity*100, res(p.Maximum), res(p.Used), p.UsedShare()*100, res(p.Pending))
	}
	if len(q.UserUsage) == 0 {
		fmt.Fprintf(w, "  Users: none\n")
		return
	}
	fmt.Fprintf(w, "  Users:\n")
	for _, u := range q.UserUsage {
		fmt.Fprintf(w, "    %s: %s, %d applications\n", u.User, res(u.Used), u.NumApplications)
	}
}
