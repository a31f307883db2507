// Package docs holds loom's documents; its test compiles the Go in them.
package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// snippetImports are what the guide's declaration blocks may use.
var snippetImports = []string{
	"bufio", "encoding/binary", "fmt", "os", "strings", "time",
	"github.com/loom-project/loom/flinkrt/state",
	"github.com/loom-project/loom/flinkrt/stream",
	"github.com/loom-project/loom/flinkrt/stream/sink",
	"github.com/loom-project/loom/flinkrt/stream/source",
}

// Every Go block of WRITING-JOBS.md compiles: each whole program (a
// block that starts with a package clause) on its own, and the other
// blocks, declarations, together in one package beside the types the
// first program declares. The first program also runs, in-process.
func TestWritingJobsExamplesCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and runs the guide's programs")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	b, err := os.ReadFile("WRITING-JOBS.md")
	if err != nil {
		t.Fatal(err)
	}
	var programs, decls []string
	for _, m := range goBlock.FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], "package ") {
			programs = append(programs, m[1])
		} else {
			decls = append(decls, m[1])
		}
	}
	if len(programs) == 0 || len(decls) < 10 {
		t.Fatalf("%d programs and %d declaration blocks in the guide; it lost its examples", len(programs), len(decls))
	}
	// The directories are inside the module, so they build against the
	// loom beside the guide.
	root, err := os.MkdirTemp(".", "_examples-") // "_": no ./... pattern lists it, should a run leave it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	gocmd := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
		}
		return string(out)
	}
	for i, p := range programs {
		dir := filepath.Join(root, "program"+string(rune('a'+i)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
		gocmd(dir, "vet", ".")
	}
	// The first program runs: its counts, printed.
	out := gocmd(filepath.Join(root, "programa"), "run", ".", "--events", "300")
	if !strings.Contains(out, "user-0,1000,15") || !strings.Contains(out, "FINISHED") {
		t.Errorf("the guide's program printed:\n%s", out)
	}

	// The declarations, with the program's types (all but its main).
	first := programs[0]
	types := first[strings.Index(first, "// Click is"):strings.Index(first, "func main()")]
	var src strings.Builder
	src.WriteString("package snippets\n\nimport (\n")
	for _, imp := range snippetImports {
		src.WriteString("\t\"" + imp + "\"\n")
	}
	src.WriteString(")\n\n// Each import is used.\nvar (\n\t_ = bufio.NewWriter\n\t_ = binary.AppendVarint\n\t_ = fmt.Sprint\n\t_ = os.Stdout\n\t_ = strings.Fields\n\t_ = time.Second\n\t_ state.TTL\n\t_ = stream.NewEnv\n\t_ = sink.Discard[int]\n\t_ = source.Sequence\n)\n\n")
	src.WriteString(types)
	for _, d := range decls {
		src.WriteString("\n" + d)
	}
	dir := filepath.Join(root, "snippets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snippets.go"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	gocmd(dir, "vet", ".")
}
