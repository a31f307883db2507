// Package cli is loom's command line: it parses, prints and calls the
// packages that do the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// exitError carries an exit status without a message of its own.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the loom command line and exits.
func Main(args []string) {
	app := &cli.App{
		Name:  "loom",
		Usage: "a resource-negotiation platform with a streaming runtime",
		Description: "loom runs applications in containers on a cluster of NodeManagers managed by a ResourceManager.\n" +
			"Start a local cluster with `loom cluster up`, then run a distributed shell with `loom dshell`.\n" +
			"Run a streaming job on the cluster in an application of its own: `loom run -t per-job ./myjob`,\n" +
			"or on a standalone JobManager: `loom jobmanager`, `loom taskmanager`, `loom run -t remote ./myjob`.",
		Commands: []*cli.Command{
			rmCommand(),
			nmCommand(),
			clusterCommand(),
			tlsCommand(),
			nodeCommand(),
			appCommand(),
			uiCommand(),
			dshellCommand(),
			dshellAMCommand(),
			adminCommand(),
			jobmanagerCommand(),
			taskmanagerCommand(),
			runCommand(),
			jobCommand(),
			sessionCommand(),
			amCommand(),
			newCommand(),
			queueCommand(),
		},
		HideHelpCommand: true,
		Writer:          os.Stdout,
		ErrWriter:       os.Stderr,
	}
	guideUsage(app)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.RunContext(ctx, interspersed(app.Commands, args))
	stop()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	fmt.Fprintf(os.Stderr, "loom: %v\n", err)
	os.Exit(1)
}

var logLevelFlag = &cli.StringFlag{Name: "log-level", Value: "info", Usage: "trace, debug, info, warn or error", EnvVars: []string{"LOOM_LOG_LEVEL"}}

func newLogger(c *cli.Context, name string, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   name,
		Level:  hclog.LevelFromString(c.String("log-level")),
		Output: w,
		// A sub-logger quieter than its parent (raft's) leaves the
		// parent's level alone.
		IndependentLevels: true,
	})
}
