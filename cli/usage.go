package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// guideUsage makes every command answer a mistyped flag or command with
// what was typed, as typed, and the nearest one it has.
func guideUsage(app *cli.App) {
	app.Action = unknownCommand("loom", app.Commands)
	for _, c := range app.Commands {
		guideCommand(c, "loom "+c.Name)
	}
}

func guideCommand(c *cli.Command, path string) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError(c, path, err) }
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = unknownCommand(path, c.Subcommands)
	}
	for _, s := range c.Subcommands {
		guideCommand(s, path+" "+s.Name)
	}
}

// usageError is a flag parse error in loom's words: an unknown flag with
// its two dashes, and the command's nearest flag.
func usageError(c *cli.Command, path string, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimPrefix(name, "-")
		var names []string
		for _, f := range c.Flags {
			names = append(names, f.Names()...)
		}
		hint := ""
		if s := nearest(name, names); s != "" {
			hint = fmt.Sprintf("; did you mean %s?", dashed(s))
		}
		return fmt.Errorf("unknown flag %s for `%s`%s (`%s --help` lists its flags)", dashed(name), path, hint, path)
	}
	return fmt.Errorf("%s: %s (see `%s --help`)", path, msg, path)
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is the action of a command that only has subcommands:
// its help without an argument, and an error naming the nearest
// subcommand for one it does not have.
func unknownCommand(path string, cmds []*cli.Command) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			if c.Command == nil || c.Command.Name == "" {
				return cli.ShowAppHelp(c)
			}
			return cli.ShowSubcommandHelp(c)
		}
		typed := c.Args().First()
		var names []string
		for _, s := range cmds {
			if !s.Hidden {
				names = append(names, s.Name)
			}
		}
		hint := ""
		if s := nearest(typed, names); s != "" {
			hint = fmt.Sprintf("; did you mean `%s %s`?", path, s)
		}
		return fmt.Errorf("unknown command %q for `%s`%s (its commands: %s)", typed, path, hint, strings.Join(names, ", "))
	}
}

// nearest is the name closest to typed, within one edit (a letter left
// out, added, changed or two swapped) for a short name and two for a
// long one, or one that starts with it; "" when none is.
func nearest(typed string, names []string) string {
	allowed := 0
	switch {
	case len(typed) >= 6:
		allowed = 2
	case len(typed) >= 3:
		allowed = 1
	}
	best, bestD := "", allowed+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(typed), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" && len(typed) >= 2 {
		if i := slices.IndexFunc(names, func(n string) bool { return strings.HasPrefix(n, typed) }); i >= 0 {
			best = names[i]
		}
	}
	return best
}

// editDistance is the edit distance of a and b with a swap of two
// neighbours one edit (optimal string alignment).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
