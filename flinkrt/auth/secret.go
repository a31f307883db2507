package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/loom-project/loom/tlsutil"
)

// EnvSecretFile names a standalone deployment's secret file, for
// `loom jobmanager`, `loom taskmanager`, `loom run -t remote` and `loom
// job`, and for the job workers a TaskManager starts.
const EnvSecretFile = "LOOM_FLINK_SECRET_FILE"

// DefaultSecretFile is where a user's standalone JobManager keeps its
// secret when no file is named: ~/.loom/flink-secret. TaskManagers and
// clients of the same user on the same host find it there.
func DefaultSecretFile() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the default secret file (%v); name one with --secret-file or %s", err, EnvSecretFile)
	}
	return filepath.Join(home, ".loom", "flink-secret"), nil
}

// SecretFile is the secret file named by flag, else by EnvSecretFile,
// else the default one.
func SecretFile(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if f := os.Getenv(EnvSecretFile); f != "" {
		return f, nil
	}
	return DefaultSecretFile()
}

// maxSecretFile bounds what is read of a secret file.
const maxSecretFile = 4 << 10

// ReadSecretFile reads a secret file: the secret in hex on one line, in a
// file no one else may read (as ssh insists of its keys).
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no deployment secret at %s: start the JobManager first (it makes the file), or name the JobManager's with --secret-file or %s", path, EnvSecretFile)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxSecretFile {
		return nil, fmt.Errorf("the secret file %s is not a small regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the secret file %s may be read by others (mode %04o); `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	secret, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(secret) != SecretSize {
		return nil, fmt.Errorf("the secret file %s does not hold a secret (%d hex digits on one line)", path, 2*SecretSize)
	}
	return secret, nil
}

// EnsureSecretFile reads the secret at path, making a new one there first
// when there is none; created says it did.
func EnsureSecretFile(path string) (secret []byte, created bool, err error) {
	if _, err := os.Lstat(path); err == nil {
		s, err := ReadSecretFile(path)
		return s, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	secret = NewSecret()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".flink-secret-")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(secret) + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		return nil, false, err
	}
	// A link fails where a file appeared meanwhile: that one wins.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			s, err := ReadSecretFile(path)
			return s, false, err
		}
		return nil, false, err
	}
	return secret, true, nil
}

// FromSecretFile is FromSecret with the secret read from path.
func FromSecretFile(path string) (*Trust, error) {
	secret, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	return FromSecret(secret, path)
}

// FromEnv is the trust a process finds in its environment: a secret file
// named by EnvSecretFile (a standalone deployment's worker), else its
// container's application certificate (a process of a loom application).
func FromEnv() (*Trust, error) {
	if f := os.Getenv(EnvSecretFile); f != "" {
		return FromSecretFile(f)
	}
	if _, ok := tlsutil.ContainerFiles(); ok {
		b, err := tlsutil.LoadContainer()
		if err != nil {
			return nil, err
		}
		return FromBundle(b, Admins())
	}
	return nil, fmt.Errorf("no credentials: this process has neither %s nor %s; it must be started by a TaskManager or a NodeManager", EnvSecretFile, tlsutil.EnvCredentials)
}

// Admins are the cluster's admins named by tlsutil.EnvAdmins.
func Admins() []string {
	var out []string
	for _, a := range strings.Split(os.Getenv(tlsutil.EnvAdmins), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
