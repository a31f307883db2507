// Package scaffold writes the start of a job author's own module: a job
// program against loom's streaming API, its test, and a go.mod that
// requires loom's module.
package scaffold

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"text/template"
)

// ModulePath is loom's module, which a job requires.
const ModulePath = "github.com/loom-project/loom"

// devVersion is the version a go.mod requires of a module it replaces
// with a directory (what `go mod edit -replace` writes).
const devVersion = "v0.0.0-00010101000000-000000000000"

//go:embed job/*.tmpl
var templates embed.FS

// Job is a job module to write.
type Job struct {
	// Dir is the directory to write it in: absent or empty.
	Dir string
	// Module is the module path; the directory's name when empty.
	Module string
	// SDKDir, when set, is a checkout of loom's module that the job's
	// go.mod points at (a replace directive); else it requires Version
	// from the module proxy.
	SDKDir  string
	Version string
	// GoVersion is the go line of the go.mod.
	GoVersion string
}

var elemRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Write writes the module's files, refusing a directory that holds any.
func (j Job) Write() error {
	if entries, err := os.ReadDir(j.Dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s already holds files; name a new or empty directory", j.Dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	abs, err := filepath.Abs(j.Dir)
	if err != nil {
		return err
	}
	name := strings.ToLower(filepath.Base(abs))
	if !elemRe.MatchString(name) {
		return fmt.Errorf("%q cannot name a Go program: use lower-case letters, digits, '-', '_' and '.'", filepath.Base(abs))
	}
	if j.Module == "" {
		j.Module = name
	}
	if j.SDKDir == "" && j.Version == "" {
		return errors.New("no loom module to require: a checkout of it (--sdk DIR) or a released version")
	}
	if j.SDKDir != "" {
		if j.SDKDir, err = filepath.Abs(j.SDKDir); err != nil {
			return err
		}
		if !IsSDK(j.SDKDir) {
			return fmt.Errorf("%s is not a checkout of %s (no go.mod of that module)", j.SDKDir, ModulePath)
		}
		j.Version = devVersion
	}
	if j.GoVersion == "" {
		j.GoVersion = "1.26"
	}
	data := map[string]string{"Name": name, "Module": j.Module, "Version": j.Version, "SDKDir": j.SDKDir, "GoVersion": j.GoVersion}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	for file, tmpl := range map[string]string{"go.mod": "go.mod.tmpl", "main.go": "main.go.tmpl", "main_test.go": "main_test.go.tmpl", ".gitignore": "gitignore.tmpl"} {
		t, err := template.ParseFS(templates, "job/"+tmpl)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(abs, file), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Tidy runs `go mod tidy` in the module, which writes its go.sum (what
// `go build` needs) from the module proxy.
func Tidy(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "mod", "tidy")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go mod tidy in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// IsSDK reports whether dir is a checkout of loom's module.
func IsSDK(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first) == "module "+ModulePath
}

// FindSDK is the checkout of loom's module a binary was built from when
// it runs from the checkout's bin/ (make build), else "".
func FindSDK() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return ""
	}
	for dir := filepath.Dir(exe); ; dir = filepath.Dir(dir) {
		if IsSDK(dir) {
			return dir
		}
		if parent := filepath.Dir(dir); parent == dir {
			return ""
		}
	}
}

// Released is the version of loom's module this binary was built as,
// when it is a released one (`go install ...@vX.Y.Z`), else "".
func Released() string {
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Main.Path != ModulePath {
		return ""
	}
	v := info.Main.Version
	// A build in a checkout carries "(devel)" or a pseudo-version from
	// its commit, which no module proxy serves.
	if !releaseRe.MatchString(v) {
		return ""
	}
	return v
}

var releaseRe = regexp.MustCompile(`^v\d+\.\d+\.\d+(-(alpha|beta|rc)(\.\d+)?)?$`)
