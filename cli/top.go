package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// topCommand is YARN's `yarn top`: the cluster's use and its live
// applications by what they hold, refreshed.
func topCommand() *cli.Command {
	return &cli.Command{
		Name:  "top",
		Usage: "show the cluster's use and its live applications by what they hold, refreshing (as yarn top)",
		Flags: []cli.Flag{rmFlag, configFlag,
			&cli.DurationFlag{Name: "delay", Aliases: []string{"d"}, Value: 3 * time.Second, Usage: "time between refreshes"},
			&cli.IntFlag{Name: "iterations", Aliases: []string{"n"}, Usage: "refresh this many times, then exit (0: until interrupted)"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "only the applications of these comma-separated leaf queues"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "only the applications of these comma-separated users"},
			&cli.StringFlag{Name: "sort", Value: "memory", Usage: "order by memory, vcores, containers, pending or time (descending)"},
		},
		Action: func(c *cli.Context) error {
			sortBy := c.String("sort")
			if !slices.Contains([]string{"memory", "vcores", "containers", "pending", "time"}, sortBy) {
				return fmt.Errorf("--sort %q: want memory, vcores, containers, pending or time", sortBy)
			}
			if c.Duration("delay") < 100*time.Millisecond {
				return fmt.Errorf("--delay %s: want at least 100ms", c.Duration("delay"))
			}
			if c.Int("iterations") < 0 {
				return fmt.Errorf("--iterations %d: want 0 or more", c.Int("iterations"))
			}
			f := topFilter{queues: splitList(c.String("queue")), users: splitList(c.String("user")), sort: sortBy}
			clear := isTerminal(stdout())
			return withRM(c, func(rm *rmclient.Client) error {
				for i := 0; ; i++ {
					frame, err := topFrame(c.Context, rm, f, time.Now())
					if err != nil {
						return err
					}
					if clear {
						fmt.Fprint(stdout(), "\x1b[H\x1b[2J")
					} else if i > 0 {
						fmt.Fprintln(stdout())
					}
					fmt.Fprint(stdout(), frame)
					if n := c.Int("iterations"); n > 0 && i+1 >= n {
						return nil
					}
					select {
					case <-c.Context.Done():
						return nil
					case <-time.After(c.Duration("delay")):
					}
				}
			})
		},
	}
}

type topFilter struct {
	queues, users []string
	sort          string
}

// isTerminal reports whether w is a terminal, so that top redraws in
// place there and prints frames one after another elsewhere.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// topFrame is one screen of top: the cluster's figures, then a row per
// live application.
func topFrame(ctx context.Context, rm *rmclient.Client, f topFilter, now time.Time) (string, error) {
	m, err := rm.Metrics(ctx)
	if err != nil {
		return "", err
	}
	apps, err := rm.ListApps(ctx, false)
	if err != nil {
		return "", err
	}
	queues, err := rm.Queues(ctx, "")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "loom top - %s: %d applications running, %d pending, %d completed\n", now.Format("15:04:05"), m.AppsRunning, m.AppsPending, m.AppsCompleted)
	fmt.Fprintf(&b, "NodeManagers: %d active, %d lost, %d unhealthy, %d decommissioned; containers: %d\n", m.ActiveNodes, m.LostNodes, m.UnhealthyNodes, m.DecommissionedNodes, m.ContainersAllocated)
	fmt.Fprintf(&b, "Memory: %d of %d MB used (%s); vcores: %d of %d used (%s)\n", m.Used.GetMemoryMb(), m.Total.GetMemoryMb(), pctOf(m.Used.GetMemoryMb(), m.Total.GetMemoryMb()),
		m.Used.GetVcores(), m.Total.GetVcores(), pctOf(int64(m.Used.GetVcores()), int64(m.Total.GetVcores())))
	var qs []string
	for _, q := range queues {
		qs = append(qs, fmt.Sprintf("%s %.0f%% of %.0f%%", q.Name, 100*q.UsedShare(), 100*q.Capacity))
	}
	fmt.Fprintf(&b, "Queues (used of capacity): %s\n\n", strings.Join(qs, ", "))

	apps = slices.DeleteFunc(apps, func(a *yarnpb.ApplicationReport) bool {
		return (len(f.queues) > 0 && !slices.ContainsFunc(f.queues, func(q string) bool { return q == a.Queue || "root."+q == a.Queue || strings.HasSuffix(a.Queue, "."+q) })) ||
			(len(f.users) > 0 && !slices.Contains(f.users, a.User))
	})
	key := func(a *yarnpb.ApplicationReport) int64 {
		switch f.sort {
		case "vcores":
			return int64(a.Used.GetVcores())
		case "containers":
			return int64(a.NumContainers)
		case "pending":
			return a.Pending.GetMemoryMb()
		case "time":
			return now.UnixMilli() - a.StartTime
		}
		return a.Used.GetMemoryMb()
	}
	slices.SortStableFunc(apps, func(x, y *yarnpb.ApplicationReport) int {
		if kx, ky := key(x), key(y); kx != ky {
			if kx > ky {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Id, y.Id)
	})
	var rows [][]string
	for _, a := range apps {
		elapsed := "-"
		if a.StartTime > 0 {
			elapsed = now.Sub(time.UnixMilli(a.StartTime)).Round(time.Second).String()
		}
		rows = append(rows, []string{a.Id, a.User, orDash(a.Type), a.Queue, fmt.Sprint(a.Priority), yarnpb.StateName(a.State.String()), fmt.Sprint(a.NumContainers),
			fmt.Sprint(a.Used.GetVcores()), fmt.Sprint(a.Used.GetMemoryMb()), fmt.Sprint(a.Pending.GetMemoryMb()), fmt.Sprintf("%.0f", 100*a.Progress), elapsed, a.Name})
	}
	tw := &b
	table(tw, "APPLICATIONID\tUSER\tTYPE\tQUEUE\tPRIOR\tSTATE\t#CONT\tVCORES\tMEM(MB)\tPENDING(MB)\t%PROGR\tTIME\tNAME", rows)
	return b.String(), nil
}

func pctOf(a, b int64) string {
	if b <= 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
