package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestNearest(t *testing.T) {
	names := []string{"list", "status", "kill", "logs", "all", "slots-per-tm", "t"}
	for typed, want := range map[string]string{
		"lsit": "list", "statsu": "status", "alll": "all", "slot-per-tm": "slots-per-tm", "sta": "status",
		"bogus": "", "Z": "", "x": "", "lo": "logs", "LIST": "list",
	} {
		if got := nearest(typed, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", typed, got, want)
		}
	}
}

// An unknown flag reads back as it was typed, with two dashes, and the
// command's nearest flag.
func TestUsageErrorNamesTheFlagAsTyped(t *testing.T) {
	c := &cli.Command{Name: "list", Flags: []cli.Flag{&cli.BoolFlag{Name: "all"}}}
	err := usageError(c, "loom node list", errors.New("flag provided but not defined: -alll"))
	if want := "unknown flag --alll for `loom node list`; did you mean --all?"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
