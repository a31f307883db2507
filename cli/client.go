package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"loom/rm/rmclient"
)

var rmFlag = &cli.StringFlag{
	Name:    "rm",
	Usage:   "ResourceManager address(es), host:port[,host:port...]",
	Value:   rmclient.DefaultAddr,
	EnvVars: []string{"LOOM_RM"},
}

var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output format: table or json"}

// withRM runs fn with a client of the RM named by --rm, and closes it.
func withRM(c *cli.Context, fn func(rm *rmclient.Client) error) error {
	rm, err := rmClient(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	return fn(rm)
}

// rmClient builds a client of the RM from --rm.
func rmClient(c *cli.Context) (*rmclient.Client, error) {
	rm, err := rmclient.NewFromList(c.String("rm"))
	if err != nil {
		return nil, err
	}
	rm.RetryFor = 5 * time.Second
	return rm, nil
}

func jsonOutput(c *cli.Context) (bool, error) {
	switch c.String("output") {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("unknown output format %q; use -o json or leave it out for a table", c.String("output"))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("expected one %s argument, got %d; see `%s --help`", what, c.NArg(), c.Command.HelpName)
	}
	return c.Args().First(), nil
}

func stdout() io.Writer { return os.Stdout }

func fmtTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format(time.RFC3339)
}
