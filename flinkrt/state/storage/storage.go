// Package storage is where checkpoints and savepoints live: a directory
// (local, or a shared filesystem every host mounts) or a prefix of an
// S3-compatible object store.
//
// A location is a string, as Flink writes it: an absolute path ("/p",
// "file:///p") or "s3://bucket/prefix" ("s3a://" and "s3p://" name the
// same store). Writes are whole or absent: a file is written to a hidden
// name and renamed, an object is one PUT. A checkpoint is complete once
// its `_metadata` is there, which is written after every file it names.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// MaxFileBytes bounds one state file read back: a checkpoint's file is
// one subtask's state of one operator.
const MaxFileBytes = 4 << 30

// backend stores the files of one kind of location.
type backend interface {
	// writeFiles writes files, by name, into dir, durably, before it
	// returns.
	writeFiles(ctx context.Context, dir string, files map[string][]byte) error
	// readFile reads a file whole; a missing one is fs.ErrNotExist.
	readFile(ctx context.Context, loc string) ([]byte, error)
	// list names the entries directly under dir (files and directories);
	// a missing dir has none.
	list(ctx context.Context, dir string) ([]string, error)
	// removeAll removes dir and everything under it.
	removeAll(ctx context.Context, dir string) error
}

// Normalize checks a location and returns it in the form the other
// functions take: a clean absolute path, or a clean s3:// URL.
func Normalize(loc string) (string, error) {
	loc = strings.TrimSpace(loc)
	if scheme, rest, ok := strings.Cut(loc, "://"); ok && isS3(scheme) {
		bucket, key, _ := strings.Cut(rest, "/")
		if err := checkBucket(bucket); err != nil {
			return "", fmt.Errorf("%s: %w", loc, err)
		}
		key = strings.Trim(path.Clean("/"+key), "/")
		if key == "" {
			return "s3://" + bucket, nil
		}
		return "s3://" + bucket + "/" + key, nil
	}
	p := localPath(loc)
	if strings.Contains(p, "://") {
		return "", fmt.Errorf("%s: want an absolute path, file:///path or s3://bucket/prefix", loc)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s: want an absolute path (which every TaskManager reaches) or s3://bucket/prefix", loc)
	}
	return filepath.Clean(p), nil
}

// Resolve is Normalize for a location a user typed: a relative path is
// taken from the working directory.
func Resolve(loc string) (string, error) {
	p := localPath(strings.TrimSpace(loc))
	if p != "" && !strings.Contains(p, "://") && !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		loc = abs
	}
	return Normalize(loc)
}

// localPath is a path given as a file URI (file:///p, file:/p, as Flink
// prints locations) or a plain path.
func localPath(p string) string {
	if strings.HasPrefix(p, "file://") {
		return strings.TrimPrefix(p, "file://")
	}
	return strings.TrimPrefix(p, "file:")
}

func isS3(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "s3", "s3a", "s3p":
		return true
	}
	return false
}

// checkBucket checks a bucket name against S3's rules.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q: want 3 to 63 characters", b)
	}
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0 && i < len(b)-1
		if !ok {
			return fmt.Errorf("bucket name %q: want lower-case letters, digits, '.' and '-' (not first or last)", b)
		}
	}
	return nil
}

// IsObjectStore reports whether a normalized location is in an object
// store.
func IsObjectStore(loc string) bool { return strings.HasPrefix(loc, "s3://") }

// URI is a normalized location as Flink prints one: file:/p or s3://b/k.
func URI(loc string) string {
	if IsObjectStore(loc) {
		return loc
	}
	return "file:" + loc
}

// Join joins a normalized location and names inside it.
func Join(loc string, elem ...string) string {
	if IsObjectStore(loc) {
		return loc + "/" + strings.Trim(path.Join(elem...), "/")
	}
	return filepath.Join(append([]string{loc}, elem...)...)
}

// Base is the last name of a normalized location.
func Base(loc string) string {
	if IsObjectStore(loc) {
		return path.Base(strings.TrimPrefix(loc, "s3://"))
	}
	return filepath.Base(loc)
}

// Dir is the location holding a normalized location.
func Dir(loc string) string {
	if IsObjectStore(loc) {
		d := path.Dir(strings.TrimPrefix(loc, "s3://"))
		return "s3://" + d
	}
	return filepath.Dir(loc)
}

func backendOf(loc string) (backend, error) {
	if IsObjectStore(loc) {
		return objectStore(), nil
	}
	if !filepath.IsAbs(loc) {
		return nil, fmt.Errorf("%s is not a normalized location", loc)
	}
	return localFS{}, nil
}

// WriteFiles writes files, by name, into the directory dir, durably: when
// it returns, each is whole and would survive a crash of this host.
func WriteFiles(ctx context.Context, dir string, files map[string][]byte) error {
	b, err := backendOf(dir)
	if err != nil {
		return err
	}
	for name := range files {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") {
			return fmt.Errorf("%q is not a plain file name", name)
		}
	}
	if err := b.writeFiles(ctx, dir, files); err != nil {
		return fmt.Errorf("writing to %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads the file at loc; one that is not there is an error that
// matches fs.ErrNotExist.
func ReadFile(ctx context.Context, loc string) ([]byte, error) {
	b, err := backendOf(loc)
	if err != nil {
		return nil, err
	}
	data, err := b.readFile(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", loc, err)
	}
	return data, nil
}

// Exists reports whether there is a file at loc.
func Exists(ctx context.Context, loc string) (bool, error) {
	_, err := ReadFile(ctx, loc)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// List names the entries directly under dir; a directory that is not
// there has none.
func List(ctx context.Context, dir string) ([]string, error) {
	b, err := backendOf(dir)
	if err != nil {
		return nil, err
	}
	names, err := b.list(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return names, nil
}

// RemoveAll removes dir and everything in it.
func RemoveAll(ctx context.Context, dir string) error {
	b, err := backendOf(dir)
	if err != nil {
		return err
	}
	if err := b.removeAll(ctx, dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
