package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAJobModule(t *testing.T) {
	root, _ := filepath.Abs("..")
	dir := filepath.Join(t.TempDir(), "clicks")
	if err := (Job{Dir: dir, SDKDir: root}).Write(); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"module clicks\n", "require " + ModulePath + " " + devVersion, "replace " + ModulePath + " => " + root} {
		if !strings.Contains(string(mod), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, mod)
		}
	}
	main, _ := os.ReadFile(filepath.Join(dir, "main.go"))
	if !strings.Contains(string(main), `env.Execute("clicks")`) || !strings.Contains(string(main), ModulePath+"/flinkrt/stream") {
		t.Errorf("main.go:\n%s", main)
	}
	if err := (Job{Dir: dir, SDKDir: root}).Write(); err == nil || !strings.Contains(err.Error(), "already holds files") {
		t.Errorf("a second write into the module: %v", err)
	}
	// A released loom requires its version, without a replace.
	rel := filepath.Join(t.TempDir(), "rel")
	if err := (Job{Dir: rel, Version: "v1.2.3", Module: "example.com/rel"}).Write(); err != nil {
		t.Fatal(err)
	}
	mod, _ = os.ReadFile(filepath.Join(rel, "go.mod"))
	if !strings.Contains(string(mod), "require "+ModulePath+" v1.2.3") || strings.Contains(string(mod), "replace") || !strings.Contains(string(mod), "module example.com/rel") {
		t.Errorf("a released loom's go.mod:\n%s", mod)
	}
	for _, bad := range []Job{
		{Dir: filepath.Join(t.TempDir(), "Has Space"), SDKDir: root},
		{Dir: filepath.Join(t.TempDir(), "nosdk")},
		{Dir: filepath.Join(t.TempDir(), "notsdk"), SDKDir: t.TempDir()},
	} {
		if err := bad.Write(); err == nil {
			t.Errorf("%+v written", bad)
		}
	}
}

func TestReleased(t *testing.T) {
	for v, ok := range map[string]bool{"v1.2.3": true, "v0.4.0-rc.1": true, "(devel)": false, "v0.0.0-20261201190000-af0fc45abcde": false, "v1.2.3+dirty": false} {
		if releaseRe.MatchString(v) != ok {
			t.Errorf("%s: released %v, want %v", v, !ok, ok)
		}
	}
}
