package nm

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Bounds of an archive a container's launch context names: what it may
// unpack into the container's working directory.
const (
	maxArchiveFiles = 20000
	maxArchiveBytes = 1 << 30
)

// unpack extracts the gzip'd tar at src into dir, which it creates. Only
// regular files and directories are taken, each under dir by a relative
// path without "..": a link, a device or an escaping name fails the
// whole archive, as do more than maxArchiveFiles entries or
// maxArchiveBytes of content.
func unpack(src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a gzip'd tar: %w", err)
	}
	defer zr.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	var files int
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if files++; files > maxArchiveFiles {
			return fmt.Errorf("the archive has more than %d entries", maxArchiveFiles)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) || strings.ContainsRune(name, 0) {
			return fmt.Errorf("archive entry %q is not a path inside it", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if total += h.Size; h.Size < 0 || total > maxArchiveBytes {
				return fmt.Errorf("the archive holds more than %d bytes", int64(maxArchiveBytes))
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			// O_EXCL: an entry named twice does not write through what
			// the first made.
			out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			_, err = io.CopyN(out, tr, h.Size)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("archive entry %q is not a regular file or a directory (type %q)", h.Name, h.Typeflag)
		}
	}
}
