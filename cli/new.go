package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/scaffold"
)

func newCommand() *cli.Command {
	return &cli.Command{
		Name:  "new",
		Usage: "start a module of your own",
		Subcommands: []*cli.Command{{
			Name:      "job",
			Usage:     "write a job module: go.mod, a main.go with a source, a keyed window and a sink, and its test",
			ArgsUsage: "DIR",
			Description: "Writes a buildable job module in DIR (new or empty) that requires loom's module, " + scaffold.ModulePath + ",\n" +
				"and runs `go mod tidy` there. Then: cd DIR && go test && go build -o DIR . && loom run -t per-job ./DIR\n" +
				"The go.mod points at a checkout of loom (--sdk, $LOOM_SDK, or the one this loom was built in)\n" +
				"or, for a released loom, requires its version from the module proxy.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "module", Usage: "the new module's path (default: DIR's name)"},
				&cli.StringFlag{Name: "sdk", Usage: "a checkout of loom's module for the go.mod to point at", EnvVars: []string{"LOOM_SDK"}},
				&cli.BoolFlag{Name: "no-tidy", Usage: "do not run `go mod tidy` (go build then needs it)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return errors.New("want the directory to write the job in: loom new job DIR")
				}
				j := scaffold.Job{Dir: c.Args().First(), Module: c.String("module"), SDKDir: c.String("sdk")}
				if j.SDKDir == "" {
					j.SDKDir = scaffold.FindSDK()
				}
				if j.SDKDir == "" {
					j.Version = scaffold.Released()
				}
				if j.SDKDir == "" && j.Version == "" {
					return errors.New("this loom was not built from a checkout it can find, nor released: give a checkout of loom's module with --sdk DIR (or $LOOM_SDK)")
				}
				if err := j.Write(); err != nil {
					return err
				}
				if !c.Bool("no-tidy") {
					if err := scaffold.Tidy(c.Context, j.Dir); err != nil {
						return err
					}
				}
				from := "loom " + j.Version + " from the module proxy"
				if j.SDKDir != "" {
					from = "loom's module in " + j.SDKDir
				}
				fmt.Fprintf(os.Stdout, "wrote a job module in %s, with %s\n", j.Dir, from)
				name := filepath.Base(filepath.Clean(j.Dir))
				fmt.Fprintf(os.Stdout, "next: cd %s && go test && go build -o %s . && loom run -t per-job ./%s\n", j.Dir, name, name)
				return nil
			},
		}},
	}
}
