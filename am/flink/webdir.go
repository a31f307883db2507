package flink

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// WebDirResource names the dashboard build in the AM's working directory.
const WebDirResource = "flink-web"

// Bounds of a dashboard build, the same as the NodeManager's for an
// archive.
const (
	maxWebFiles = 20000
	maxWebBytes = 1 << 30
)

// stageWebDir packs a dashboard build (a directory with index.html) as a
// gzip'd tar and stages it as an archive the NodeManager unpacks into the
// AM's working directory. The archive is the same for the same files, so
// staging it again finds it staged.
func stageWebDir(ctx context.Context, rm *rmclient.Client, stagingURL, dir string) (*yarnpb.LocalResource, error) {
	if err := checkWebDir(dir); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "loom-web-*.tgz")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	err = packDir(dir, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("packing --web-dir %s: %w", dir, err)
	}
	res, err := rm.Stage(ctx, stagingURL, tmp.Name(), WebDirResource, false)
	if err != nil {
		return nil, fmt.Errorf("staging --web-dir %s: %w", dir, err)
	}
	res.Archive = true
	return res, nil
}

// checkWebDir checks that dir, if given, is a dashboard build.
func checkWebDir(dir string) error {
	if dir == "" {
		return nil
	}
	if st, err := os.Stat(filepath.Join(dir, "index.html")); err != nil || !st.Mode().IsRegular() {
		return errdefs.InvalidArgument("--web-dir %s holds no index.html: give the directory of a dashboard build (Flink's flink-runtime-web/web-dashboard/web)", dir)
	}
	return nil
}

// packDir writes dir's regular files and directories to w as a gzip'd
// tar, in name order, without times or owners.
func packDir(dir string, w io.Writer) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	var files int
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		if files++; files > maxWebFiles {
			return fmt.Errorf("more than %d files", maxWebFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Format: tar.FormatPAX}
		switch {
		case info.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		case info.Mode().IsRegular():
			if total += info.Size(); total > maxWebBytes {
				return fmt.Errorf("more than %d bytes", int64(maxWebBytes))
			}
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, info.Size())
			return err
		}
		return fmt.Errorf("%s is not a regular file or a directory", rel)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
