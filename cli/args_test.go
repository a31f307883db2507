package cli

import (
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestFlagsMayFollowPositionalArguments(t *testing.T) {
	cmds := []*cli.Command{appCommand(), dshellCommand()}
	tests := []struct{ in, want []string }{
		{[]string{"loom", "app", "logs", "APP", "--container", "C"}, []string{"loom", "app", "logs", "--container", "C", "APP"}},
		{[]string{"loom", "app", "status", "APP", "-o", "json"}, []string{"loom", "app", "status", "-o", "json", "APP"}},
		{[]string{"loom", "app", "list", "--all"}, []string{"loom", "app", "list", "--all"}},
		{[]string{"loom", "dshell", "-d", "--num-containers", "2", "--", "sh", "-c", "x --y"},
			[]string{"loom", "dshell", "-d", "--num-containers", "2", "--", "sh", "-c", "x --y"}},
		{[]string{"loom", "app"}, []string{"loom", "app"}},
	}
	for _, tc := range tests {
		if got := interspersed(cmds, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("interspersed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
