package nm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name string
	typ  byte
	body string
	link string
}

func tgz(t *testing.T, entries ...entry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnpackTakesFilesAndDirectories(t *testing.T) {
	src := tgz(t, entry{name: "assets/", typ: tar.TypeDir}, entry{name: "index.html", typ: tar.TypeReg, body: "<html>"},
		entry{name: "assets/app.js", typ: tar.TypeReg, body: "x()"}, entry{name: "./deep/er/f.txt", typ: tar.TypeReg, body: "f"})
	dir := filepath.Join(t.TempDir(), "web")
	if err := unpack(src, dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"index.html": "<html>", "assets/app.js": "x()", "deep/er/f.txt": "f"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
}

// A hostile archive fails whole, and nothing lands outside its directory.
func TestUnpackRefusesWhatCouldEscape(t *testing.T) {
	outside := t.TempDir()
	for _, c := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"parent", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, "not a path inside"},
		{"deep parent", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, "not a path inside"},
		{"absolute", []entry{{name: filepath.Join(outside, "evil"), typ: tar.TypeReg, body: "x"}}, "not a path inside"},
		{"symlink", []entry{{name: "l", typ: tar.TypeSymlink, link: outside}, {name: "l/evil", typ: tar.TypeReg, body: "x"}}, "not a regular file"},
		{"hard link", []entry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, "not a regular file"},
		{"twice", []entry{{name: "f", typ: tar.TypeReg, body: "1"}, {name: "f", typ: tar.TypeReg, body: "2"}}, "file exists"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := unpack(tgz(t, c.entries...), filepath.Join(t.TempDir(), "web"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("unpacked with %v, want an error saying %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("a file was written outside the archive's directory")
			}
		})
	}
	notGzip := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notGzip, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unpack(notGzip, filepath.Join(t.TempDir(), "web")); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("a file that is no archive: %v", err)
	}
}

func TestUnpackBoundsItsEntries(t *testing.T) {
	var many []entry
	for i := range maxArchiveFiles + 1 {
		many = append(many, entry{name: strings.Repeat("d/", i%3) + "f" + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('0'+i/260%10)) + string(rune('0'+i/2600%10)) + string(rune('0'+i/26000%10)), typ: tar.TypeDir})
	}
	if err := unpack(tgz(t, many...), filepath.Join(t.TempDir(), "web")); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("%d entries: %v", len(many), err)
	}
}
